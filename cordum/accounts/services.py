"""Writes for accounts. Every admin change is recorded in the AdminAuditLog in the same transaction."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.forms.models import model_to_dict
from django.utils import timezone
from django.utils.text import slugify

from cordum.accounts.choices import AuditAction, Role
from cordum.accounts.models import (
    AdminAuditLog,
    Agent,
    AgentToken,
    Invitation,
    Membership,
    Organization,
    Team,
    UserToken,
)
from cordum.common.crypto import new_token, token_digest
from cordum.common.errors import Conflict, CordumError

User = get_user_model()

AGENT_TOKEN_PREFIX = "cdm_agent"
USER_TOKEN_PREFIX = "cdm_user"
_SECRET_FIELDS = {"password", "digest", "token", "secret", "private_key", "webhook_secret", "credentials"}


def snapshot(obj) -> dict:
    """JSON-safe field values of a model instance for the audit log, secrets blanked."""
    data = model_to_dict(obj)
    out = {}
    for key, value in data.items():
        if any(s in key for s in _SECRET_FIELDS):
            out[key] = "***" if value else ""
        elif isinstance(value, list):
            out[key] = [getattr(v, "pk", v) for v in value]
        elif hasattr(value, "isoformat"):
            out[key] = value.isoformat()
        else:
            out[key] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
    return out


def audit_log_record(
    *, organization: Organization, actor, action: str, obj, before: dict | None = None, after: dict | None = None
) -> AdminAuditLog:
    return AdminAuditLog.objects.create(
        organization=organization,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=getattr(actor, "email", "") or getattr(actor, "username", "") or "system",
        action=action,
        object_type=type(obj).__name__,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        before=before,
        after=after,
    )


@transaction.atomic
def organization_create(*, name: str, slug: str | None = None) -> Organization:
    return Organization.objects.create(name=name, slug=slug or slugify(name))


# --- teams ------------------------------------------------------------------------------------
@transaction.atomic
def team_create(*, organization: Organization, actor, name: str, description: str = "", slug: str = "") -> Team:
    slug = slug or slugify(name)
    if not slug:  # policies name teams by slug (`teams: [payments]`): it must have something to be made of
        raise CordumError("Invalid input: name: give a name with at least one letter or digit (a-z, 0-9); the "
                          "team's slug, which policies use, is made from it.", {"field": "name"})
    if Team.objects.filter(organization=organization, slug=slug).exists():
        raise CordumError(f"A team named {name!r} already exists.", {"field": "name"})
    team = Team.objects.create(organization=organization, name=name, slug=slug, description=description)
    audit_log_record(organization=organization, actor=actor, action=AuditAction.CREATE, obj=team, after=snapshot(team))
    return team


@transaction.atomic
def team_update(*, team: Team, actor, **fields) -> Team:
    before = snapshot(team)
    for key, value in fields.items():
        setattr(team, key, value)
    team.full_clean()
    team.save()
    audit_log_record(
        organization=team.organization, actor=actor, action=AuditAction.UPDATE, obj=team,
        before=before, after=snapshot(team),
    )
    return team


@transaction.atomic
def team_delete(*, team: Team, actor) -> None:
    """Refused (409) while agents belong to the team or evidence names it.

    Evidence records keep the team's id and team-scoped members read them by it: deleting the team would hide
    its history from them for good (a new team of the same name is another id) and leave its agents teamless.
    """
    from cordum.decisions.models import EvidenceRecord  # decisions depends on accounts, not the reverse

    agents = Agent.objects.filter(team=team).count()
    has_evidence = EvidenceRecord.objects.filter(organization_id=team.organization_id, team_id=team.pk).exists()
    if agents or has_evidence:
        reasons = ([f"{agents} agent(s) belong to it"] if agents else []) + (
            ["evidence records name it (its members would no longer see them)"] if has_evidence else [])
        raise Conflict(f"Team {team.name} cannot be deleted: {' and '.join(reasons)}. Rename it instead, "
                       "or move its agents to another team first.", {"agents": agents, "evidence": has_evidence})
    audit_log_record(
        organization=team.organization, actor=actor, action=AuditAction.DELETE, obj=team, before=snapshot(team)
    )
    team.delete()


# --- memberships ------------------------------------------------------------------------------
def _require_may_enrol(*, actor, user, organization: Organization) -> None:
    """An existing account joins an organisation only through someone who already administers every
    organisation it belongs to (or a superuser): an admin elsewhere cannot pull in, and read, other people."""
    if actor is None or getattr(actor, "is_superuser", False):
        return
    others = set(Membership.objects.filter(user=user).exclude(organization=organization)
                 .values_list("organization_id", flat=True))
    administered = set(Membership.objects.filter(user=actor, role=Role.ADMIN, organization_id__in=others)
                       .values_list("organization_id", flat=True))
    if others - administered:
        raise CordumError(f"The username {user.username} is taken by someone outside {organization}. Choose "
                          "another username, or ask an admin of their organisation (or a superuser) to add them.",
                          {"field": "username"})


@transaction.atomic
def membership_create(
    *, organization: Organization, actor, username: str, role: str, email: str = "", password: str | None = None,
    teams=(),
) -> Membership:
    user, created = User.objects.get_or_create(username=username, defaults={"email": email})
    if not created:
        _require_may_enrol(actor=actor, user=user, organization=organization)
    if created:
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise CordumError(f"{username} is already a member of {organization}.", {"field": "username"})
    membership = Membership.objects.create(organization=organization, user=user, role=role)
    membership.teams.set(teams)
    audit_log_record(
        organization=organization, actor=actor, action=AuditAction.CREATE, obj=membership, after=snapshot(membership)
    )
    if not user.has_usable_password() and user.email:
        invitation_send(membership=membership, actor=actor)
    return membership


# --- invitations ------------------------------------------------------------------------------
INVITATION_PREFIX = "cdm_invite"


def invitation_url(token: str) -> str:
    return f"{settings.CORDUM_PUBLIC_URL.rstrip('/')}/invite/{token}/"


@transaction.atomic
def invitation_send(*, membership: Membership, actor) -> str:
    """Emails a new single-use link to set a password (earlier open links stop working); returns the link."""
    user = membership.user
    if not user.email:
        raise CordumError(f"{user.username} has no email address to send an invitation to.", {"field": "email"})
    if user.has_usable_password():
        raise Conflict(f"{user.username} has already set a password; they can reset it from the login page.")
    now = timezone.now()
    membership.invitations.filter(accepted_at=None, revoked_at=None).update(revoked_at=now)
    token = new_token(INVITATION_PREFIX)
    invitation = Invitation.objects.create(
        membership=membership, digest=token_digest(token), sent_to=user.email, sent_by=actor if actor else None,
        expires_at=now + timedelta(seconds=settings.CORDUM_INVITATION_TTL),
    )
    url = invitation_url(token)
    organization = membership.organization
    transaction.on_commit(lambda: send_mail(
        subject=f"You are invited to {organization.name} on Cordum",
        message=(f"{getattr(actor, 'username', 'An admin')} added you to {organization.name} on Cordum as "
                 f"{membership.get_role_display()}.\n\nSet your password (the link works once, until "
                 f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n{url}\n\nYour username is {user.username}.\n"),
        from_email=None, recipient_list=[user.email],
    ))
    audit_log_record(organization=organization, actor=actor, action=AuditAction.ACTION, obj=invitation,
                     after={"action": f"invitation sent to {user.email}",
                            "expires_at": invitation.expires_at.isoformat()})
    return url


@transaction.atomic
def invitation_revoke(*, membership: Membership, actor) -> int:
    revoked = membership.invitations.filter(accepted_at=None, revoked_at=None).update(revoked_at=timezone.now())
    if revoked:
        audit_log_record(organization=membership.organization, actor=actor, action=AuditAction.ACTION,
                         obj=membership, after={"action": "invitation revoked"})
    return revoked


def invitation_for_token(token: str) -> Invitation:
    """The open invitation a link names, or a CordumError saying why the link no longer works."""
    invitation = Invitation.objects.select_related("membership__user", "membership__organization").filter(
        digest=token_digest(token)).first()
    if invitation is None or invitation.revoked_at is not None:
        raise CordumError("This invitation link is not valid (it may have been revoked or replaced by a newer one). "
                          "Ask an admin to send a new invitation.")
    if invitation.accepted_at is not None:
        raise CordumError("This invitation link was already used. Log in, or reset your password from the login "
                          "page.")
    if invitation.expires_at <= timezone.now():
        raise CordumError("This invitation link has expired. Ask an admin to send a new one.")
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, password: str):
    """Sets the member's password from an open invitation and closes the invitation (single use)."""
    invitation = invitation_for_token(token)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at is not None:
        raise CordumError("This invitation link was already used.")
    user = invitation.membership.user
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise CordumError(" ".join(exc.messages), {"field": "new_password1"}) from exc
    user.set_password(password)
    user.save(update_fields=["password"])
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    audit_log_record(organization=invitation.membership.organization, actor=user, action=AuditAction.ACTION,
                     obj=invitation, after={"action": "invitation accepted, password set"})
    return user


def _require_an_admin_remains(membership: Membership, *, removing: bool = False, role: str | None = None) -> None:
    """An organisation always keeps an admin: the last one can be neither removed nor demoted (the admins' rows are
    locked, so two admins demoting each other at once cannot both succeed)."""
    if membership.role != Role.ADMIN or (not removing and role in (None, Role.ADMIN)):
        return
    admins = list(Membership.objects.select_for_update().filter(organization_id=membership.organization_id,
                                                                 role=Role.ADMIN).values_list("pk", flat=True))
    if set(admins) <= {membership.pk}:
        raise Conflict(f"{membership.user.username} is the last admin of {membership.organization.name}: make someone "
                       "else admin first, so the organisation is never left without one.", {"field": "role"})


@transaction.atomic
def membership_update(*, membership: Membership, actor, role: str | None = None, teams=None) -> Membership:
    _require_an_admin_remains(membership, role=role)
    before = snapshot(membership)
    if role is not None:
        membership.role = role
        membership.save(update_fields=["role"])
    if teams is not None:
        membership.teams.set(teams)
    audit_log_record(
        organization=membership.organization, actor=actor, action=AuditAction.UPDATE, obj=membership,
        before=before, after=snapshot(membership),
    )
    return membership


@transaction.atomic
def membership_delete(*, membership: Membership, actor) -> None:
    _require_an_admin_remains(membership, removing=True)
    audit_log_record(
        organization=membership.organization, actor=actor, action=AuditAction.DELETE, obj=membership,
        before=snapshot(membership),
    )
    membership.delete()


# --- agents -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued token: `plaintext` exists only here and is shown to the user once."""

    token: AgentToken
    plaintext: str


def _agent_token_issue(agent: Agent) -> IssuedToken:
    plaintext = new_token(AGENT_TOKEN_PREFIX)
    token = AgentToken.objects.create(agent=agent, prefix=plaintext[len(AGENT_TOKEN_PREFIX) + 1:][:8],
                                      digest=token_digest(plaintext))
    return IssuedToken(token=token, plaintext=plaintext)


@transaction.atomic
def agent_create(
    *, organization: Organization, actor, name: str, kind: str, team: Team | None = None,
    environment: str = "dev", owner=None,
) -> tuple[Agent, IssuedToken]:
    if Agent.objects.filter(organization=organization, name=name).exists():
        raise CordumError(f"An agent named {name!r} already exists.", {"field": "name"})
    if team is not None and team.organization_id != organization.pk:
        raise CordumError("The team belongs to another organisation.", {"field": "team"})
    agent = Agent.objects.create(
        organization=organization, name=name, kind=kind, team=team, environment=environment, owner=owner
    )
    issued = _agent_token_issue(agent)
    audit_log_record(organization=organization, actor=actor, action=AuditAction.CREATE, obj=agent, after=snapshot(agent))
    return agent, issued


@transaction.atomic
def agent_update(*, agent: Agent, actor, **fields) -> Agent:
    before = snapshot(agent)
    for key, value in fields.items():
        setattr(agent, key, value)
    agent.full_clean(validate_unique=False)
    agent.save()
    audit_log_record(
        organization=agent.organization, actor=actor, action=AuditAction.UPDATE, obj=agent,
        before=before, after=snapshot(agent),
    )
    return agent


@transaction.atomic
def agent_token_rotate(*, agent: Agent, actor) -> IssuedToken:
    """Revoke every active token of the agent and issue a new one."""
    now = timezone.now()
    revoked = AgentToken.objects.filter(agent=agent, revoked_at__isnull=True).update(revoked_at=now)
    issued = _agent_token_issue(agent)
    audit_log_record(
        organization=agent.organization, actor=actor, action=AuditAction.ROTATE, obj=agent,
        before={"active_tokens": revoked}, after={"token_prefix": issued.token.prefix},
    )
    return issued


@transaction.atomic
def agent_revoke(*, agent: Agent, actor) -> Agent:
    """Deactivate the agent and revoke its tokens: its sidecar is refused from now on."""
    before = snapshot(agent)
    AgentToken.objects.filter(agent=agent, revoked_at__isnull=True).update(revoked_at=timezone.now())
    agent.is_active = False
    agent.save(update_fields=["is_active"])
    audit_log_record(
        organization=agent.organization, actor=actor, action=AuditAction.REVOKE, obj=agent,
        before=before, after=snapshot(agent),
    )
    return agent


@transaction.atomic
def user_token_create(*, user, name: str) -> tuple[UserToken, str]:
    plaintext = new_token(USER_TOKEN_PREFIX)
    token = UserToken.objects.create(
        user=user, name=name, prefix=plaintext[len(USER_TOKEN_PREFIX) + 1:][:8], digest=token_digest(plaintext)
    )
    return token, plaintext


@transaction.atomic
def user_token_revoke(*, token: UserToken) -> None:
    UserToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
