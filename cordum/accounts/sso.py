"""Single sign-on with OpenID Connect, configured per organisation (SingleSignOn).

Authlib does the protocol (discovery, state, nonce, PKCE, id_token signature and claims); this module decides
who the person is in Cordum: the email domain must be allowed, the groups claim maps to role and teams, and the
membership is created on first sign-in and brought in line with the provider's groups on every sign-in.
"""

from __future__ import annotations

from authlib.integrations.django_client import OAuth
from django.contrib.auth import get_user_model
from django.db import transaction

from cordum.accounts.choices import AuditAction, Role
from cordum.accounts.models import Membership, SingleSignOn, Team
from cordum.accounts.services import audit_log_record, snapshot
from cordum.common import crypto
from cordum.common.errors import CordumError

User = get_user_model()


def sso_client(config: SingleSignOn):
    """An Authlib client for the organisation's provider (metadata from its discovery document)."""
    oauth = OAuth()
    return oauth.register(
        name=f"org{config.organization_id}",
        client_id=config.client_id,
        client_secret=config.client_secret,
        server_metadata_url=f"{config.issuer.rstrip('/')}/.well-known/openid-configuration",
        client_kwargs={"scope": f"openid email profile {config.groups_claim}".strip(), "code_challenge_method": "S256"},
    )


@transaction.atomic
def sso_configure(*, organization, actor, client_secret: str = "", **fields) -> SingleSignOn:
    """Creates or updates the organisation's provider; an empty `client_secret` keeps the stored one."""
    config = SingleSignOn.objects.filter(organization=organization).first()
    before = snapshot(config) if config else None
    if config is None:
        config = SingleSignOn(organization=organization)
    for key, value in fields.items():
        setattr(config, key, value)
    if client_secret:
        config.client_secret_encrypted = crypto.encrypt(client_secret)
    mapping_errors = sso_mapping_errors(organization=organization, mappings=config.group_mappings)
    if mapping_errors:
        raise CordumError("; ".join(mapping_errors), {"field": "group_mappings"})
    config.save()
    audit_log_record(organization=organization, actor=actor,
                     action=AuditAction.UPDATE if before else AuditAction.CREATE, obj=config,
                     before=before, after=snapshot(config))
    return config


def sso_mapping_errors(*, organization, mappings) -> list[str]:
    if not isinstance(mappings, list):
        return ["group mappings must be a list of {group, role, teams}"]
    slugs = set(Team.objects.filter(organization=organization).values_list("slug", flat=True))
    errors = []
    for i, m in enumerate(mappings):
        if not isinstance(m, dict) or not isinstance(m.get("group"), str) or not m["group"]:
            errors.append(f"mapping {i + 1}: needs a group name")
            continue
        if m.get("role") not in Role.values:
            errors.append(f"mapping {i + 1} ({m['group']}): role must be one of {', '.join(Role.values)}")
        unknown = [t for t in m.get("teams") or [] if t not in slugs]
        if unknown:
            errors.append(f"mapping {i + 1} ({m['group']}): no team {', '.join(unknown)} in this organisation")
    return errors


def _role_and_teams(config: SingleSignOn, groups: list[str]) -> tuple[str, list[str]]:
    role, teams = "", []
    for m in config.group_mappings:
        if m.get("group") in groups:
            role = role or m["role"]
            teams += [t for t in m.get("teams") or [] if t not in teams]
    role = role or config.default_role
    if not role:
        raise CordumError("Your groups at the identity provider give you no role in this organisation. Ask an "
                          "admin to map one of your groups.", status_code=403)
    return role, teams


@transaction.atomic
def sso_member_from_claims(*, config: SingleSignOn, claims: dict):
    """The user the provider vouched for, a member of the organisation with the role and teams its groups map to."""
    organization = config.organization
    email = str(claims.get("email") or "").strip().lower()
    if not email or claims.get("email_verified") is False:
        raise CordumError("The identity provider did not give a verified email address.", status_code=403)
    domain = email.rsplit("@", 1)[-1]
    if config.domains and domain not in config.domains:
        raise CordumError(f"Email addresses at {domain} may not sign in to {organization.name}.", status_code=403)
    raw_groups = claims.get(config.groups_claim) or []
    groups = [str(g) for g in raw_groups] if isinstance(raw_groups, list) else [str(raw_groups)]
    role, team_slugs = _role_and_teams(config, groups)

    user = User.objects.filter(email__iexact=email, memberships__organization=organization).first()
    if user is None:
        user = User.objects.filter(email__iexact=email).first()
        if user is not None and (user.memberships.exists() or user.is_superuser or user.is_staff):
            # Another organisation's person, or an operator's account: this provider cannot vouch for them.
            raise CordumError(f"{email} belongs to another organisation or to an operator of this Cordum; ask an "
                              "admin to add them.", status_code=403)
    if user is None:
        username = email if not User.objects.filter(username=email).exists() else f"{email}#{organization.slug}"
        user = User(username=username, email=email,
                    first_name=str(claims.get("given_name") or "")[:150],
                    last_name=str(claims.get("family_name") or "")[:150])
        user.set_unusable_password()
        user.save()
    teams = list(Team.objects.filter(organization=organization, slug__in=team_slugs))
    membership = Membership.objects.filter(organization=organization, user=user).first()
    if membership is None:
        membership = Membership.objects.create(organization=organization, user=user, role=role)
        membership.teams.set(teams)
        audit_log_record(organization=organization, actor=None, action=AuditAction.CREATE, obj=membership,
                         after={**snapshot(membership), "action": "single sign-on"})
    else:
        before = snapshot(membership)
        if membership.role != role:
            membership.role = role
            membership.save(update_fields=["role"])
        membership.teams.set(teams)
        after = snapshot(membership)
        if after != before:
            audit_log_record(organization=organization, actor=None, action=AuditAction.UPDATE, obj=membership,
                             before=before, after=after)
    return user, membership


def password_login_refusal(user) -> str | None:
    """Why `user` may not log in with a password: every organisation they belong to requires single sign-on."""
    if user.is_superuser:
        return None
    memberships = list(Membership.objects.filter(user=user).select_related("organization__sso"))
    if not memberships:
        return None
    sso_only = [m.organization.name for m in memberships
                if hasattr(m.organization, "sso") and m.organization.sso.enabled and not m.organization.sso.password_login]
    if len(sso_only) == len(memberships):
        return f"{', '.join(sso_only)} signs in with single sign-on: use “Sign in with SSO” below."
    return None
