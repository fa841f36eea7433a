"""factory-boy factories for model data used across the test suite."""

import factory
from django.contrib.auth import get_user_model

from cordum.accounts import services
from cordum.accounts.choices import Role
from cordum.accounts.models import Membership, Organization, Team


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-1")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Team {n}")
    slug = factory.Sequence(lambda n: f"team-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.MEMBER


def agent_with_token(*, organization, name="claude-code-test", team=None, owner=None, kind="claude-code",
                     environment="dev"):
    """An Agent and the plaintext of its token, issued the way the product issues them."""
    return services.agent_create(
        organization=organization, actor=None, name=name, kind=kind, team=team, environment=environment, owner=owner
    )
