"""Who may see and act on rollouts: authors and admins act, auditors read, members see nothing."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from cordum.rollouts.models import Rollout
from tests.rollouts.conftest import POLICY_V1, POLICY_V2, publish_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def rollout(repository, plan, fleet):
    publish_version(repository, POLICY_V1, "v1.0.0")
    publish_version(repository, POLICY_V2, "v1.1.0")
    return Rollout.objects.get()


ACTIONS = ["promote", "pause", "rollback"]


def test_auditor_reads_rollouts_but_cannot_act(person, rollout):
    auditor = person(Role.AUDITOR)
    assert auditor.get("/api/v1/rollouts").status_code == 200
    assert auditor.get(f"/api/v1/rollouts/{rollout.pk}").json()["to_version"] == rollout.to_version.version
    for action in ACTIONS:
        assert auditor.post(f"/api/v1/rollouts/{rollout.pk}/{action}").status_code == 403
        assert auditor.post(reverse("rollouts:action", args=[rollout.pk, action])).status_code == 403
    page = auditor.get(reverse("rollouts:detail", args=[rollout.pk])).content.decode()
    assert rollout.to_version.version in page
    assert 'data-testid="promote"' not in page and 'data-testid="rollback"' not in page
    rollout.refresh_from_db()
    assert (rollout.state, rollout.stage_index) == ("running", 0)


def test_member_gets_403_everywhere(person, rollout, repository):
    member = person(Role.MEMBER)
    for url in ("/api/v1/rollouts", f"/api/v1/rollouts/{rollout.pk}", "/api/v1/fleet",
                reverse("rollouts:list"), reverse("rollouts:detail", args=[rollout.pk]),
                f"/api/v1/rollout-plans/{repository.pk}"):
        assert member.get(url).status_code == 403, url
    assert member.post(f"/api/v1/rollouts/{rollout.pk}/promote").status_code == 403


@pytest.mark.parametrize("role", [Role.POLICY_AUTHOR, Role.ADMIN])
def test_authors_and_admins_act_from_the_rollout_page(person, rollout, role):
    user = person(role)
    page = user.get(reverse("rollouts:detail", args=[rollout.pk])).content.decode()
    assert 'data-testid="promote"' in page
    response = user.post(reverse("rollouts:action", args=[rollout.pk, "promote"]), {"force": "1"})
    assert response.status_code == 302
    rollout.refresh_from_db()
    assert rollout.stage_index == 1


def test_reviewer_cannot_see_rollouts(person, rollout):
    assert person(Role.REVIEWER).get(reverse("rollouts:list")).status_code == 403


def test_rollouts_of_another_organisation_are_not_found(person, rollout):
    from tests.factories import MembershipFactory

    outsider = MembershipFactory(role=Role.ADMIN)
    client = person(Role.AUDITOR)
    client.force_login(outsider.user)
    assert client.get(f"/api/v1/rollouts/{rollout.pk}").status_code == 404
    assert client.get(reverse("rollouts:detail", args=[rollout.pk])).status_code == 404


def test_plan_api_validates_stages_and_is_audited(person, repository):
    from cordum.accounts.models import AdminAuditLog

    author = person(Role.POLICY_AUTHOR)
    bad = author.put(f"/api/v1/rollout-plans/{repository.pk}",
                     {"stages": [{"kind": "canary", "min_soak_seconds": 0}]}, content_type="application/json")
    assert bad.status_code == 400 and "stages[0]" in bad.json()["message"]
    good = author.put(f"/api/v1/rollout-plans/{repository.pk}", {"stages": [
        {"name": "canary", "kind": "canary", "teams": ["payments"], "min_soak_seconds": 600},
        {"name": "all", "kind": "all"}], "auto_start": False}, content_type="application/json")
    assert good.status_code == 200, good.content
    assert author.get(f"/api/v1/rollout-plans/{repository.pk}").json()["auto_start"] is False
    assert AdminAuditLog.objects.filter(object_type="RolloutPlan").count() == 1
    assert person(Role.AUDITOR).put(f"/api/v1/rollout-plans/{repository.pk}", {"stages": []},
                                     content_type="application/json").status_code == 403


def test_plan_form_saves_the_plan(person, repository):
    from tests.rollouts.test_plan_warnings import plan_post

    author = person(Role.POLICY_AUTHOR)
    assert author.get(reverse("rollouts:plan", args=[repository.pk])).status_code == 200
    response = author.post(reverse("rollouts:plan", args=[repository.pk]), plan_post(
        [{"name": "all", "kind": "all", "soak_minutes": "0"}], max_new_restriction_rate="0.1", min_calls="5"))
    assert response.status_code == 302
    assert repository.rollout_plan.max_new_restriction_rate == 0.1


def test_rollout_list_and_detail_pages_render(person, rollout):
    auditor = person(Role.AUDITOR)
    listing = auditor.get(reverse("rollouts:list")).content.decode()
    assert f"#{rollout.pk}" in listing and rollout.to_version.version in listing
    fragment = auditor.get(reverse("rollouts:detail", args=[rollout.pk]), HTTP_HX_REQUEST="true")
    assert b"<html" not in fragment.content and b'data-testid="rollout-state"' in fragment.content
