"""Reads for accounts, scoped to an organisation."""

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from cordum.accounts.choices import AuditAction
from cordum.accounts.models import AdminAuditLog, Agent, Invitation, Membership, Organization, Team


def membership_for(*, user, organization_id: int | None = None) -> Membership | None:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "pk", None):
        return None
    qs = Membership.objects.select_related("organization").filter(user=user)
    if organization_id:
        qs = qs.filter(organization_id=organization_id)
    return qs.order_by("organization_id").first()


def team_list(*, organization: Organization) -> QuerySet[Team]:
    return Team.objects.filter(organization=organization)


def membership_list(*, organization: Organization) -> QuerySet[Membership]:
    """Members, each annotated `invited`: an open invitation waits for them to set a password."""
    open_invitation = Invitation.objects.filter(membership=OuterRef("pk"), accepted_at=None, revoked_at=None,
                                                expires_at__gt=timezone.now())
    return (
        Membership.objects.filter(organization=organization)
        .annotate(invited=Exists(open_invitation))
        .select_related("user")
        .prefetch_related("teams")
        .order_by("user__username")
    )


def agent_list(*, organization: Organization, filters: dict | None = None) -> QuerySet[Agent]:
    qs = Agent.objects.filter(organization=organization).select_related("team", "owner")
    filters = filters or {}
    if filters.get("team"):
        qs = qs.filter(team__slug=filters["team"])
    if filters.get("kind"):
        qs = qs.filter(kind=filters["kind"])
    if filters.get("environment"):
        qs = qs.filter(environment=filters["environment"])
    if filters.get("active") in ("true", "1", True):
        qs = qs.filter(is_active=True)
    elif filters.get("active") in ("false", "0", False):
        qs = qs.filter(is_active=False)
    return qs.order_by("name")


def admin_audit_log_list(*, organization: Organization) -> QuerySet[AdminAuditLog]:
    return AdminAuditLog.objects.filter(organization=organization).select_related("actor")


@dataclass(frozen=True)
class AuditEntryText:
    """An admin log entry as a person reads it: one sentence, and the fields it changed."""

    sentence: str
    changes: list[tuple[str, str, str]]  # (field, before, after)


_NOUNS = {"Membership": "member", "PolicyRepository": "repository", "SigningKey": "signing key"}
_VERBS = {AuditAction.CREATE: "added", AuditAction.DELETE: "removed", AuditAction.ROTATE: "rotated the token of",
          AuditAction.REVOKE: "revoked"}
_HIDDEN_FIELDS = {"id", "organization", "created_at"}


def _display(field: str, value, *, usernames: dict, team_names: dict) -> str:
    if value is None or value == "":
        return "—"
    if field in ("user", "owner", "actor") and value in usernames:
        return usernames[value]
    if field == "teams" and isinstance(value, list):
        return ", ".join(team_names.get(v, str(v)) for v in value) or "none"
    if field == "team" and value in team_names:
        return team_names[value]
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return str(value)


def admin_audit_entries_describe(entries) -> list[tuple[AdminAuditLog, AuditEntryText]]:
    """Each entry with its sentence ("admin changed role of member mo from member to reviewer")."""
    from django.contrib.auth import get_user_model

    entries = list(entries)
    user_ids, team_ids = set(), set()
    for e in entries:
        for snap in (e.before or {}, e.after or {}):
            user_ids.update(v for k, v in snap.items() if k in ("user", "owner") and isinstance(v, int))
            team_ids.update(v for v in snap.get("teams") or [] if isinstance(v, int))
            if isinstance(snap.get("team"), int):
                team_ids.add(snap["team"])
    usernames = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    team_names = dict(Team.objects.filter(pk__in=team_ids).values_list("pk", "name"))
    out = []
    for e in entries:
        before, after = e.before or {}, e.after or {}
        snap = after or before
        noun = _NOUNS.get(e.object_type, e.object_type.lower())
        if e.object_type == "Membership" and snap.get("user") in usernames:
            name = usernames[snap["user"]]
        else:
            name = snap.get("name") or e.object_repr
        actor = e.actor_name or "system"
        changes = [
            (field, _display(field, before.get(field), usernames=usernames, team_names=team_names),
             _display(field, after.get(field), usernames=usernames, team_names=team_names))
            for field in sorted(set(before) | set(after) - _HIDDEN_FIELDS)
            if field not in _HIDDEN_FIELDS and before.get(field) != after.get(field)
        ]
        if e.action == AuditAction.UPDATE:
            if len(changes) == 1:
                field, old, new = changes[0]
                sentence = f"{actor} changed {field} of {noun} {name} from {old} to {new}"
            elif changes:
                sentence = f"{actor} changed {', '.join(c[0] for c in changes)} of {noun} {name}"
            else:
                sentence = f"{actor} saved {noun} {name} without changes"
        elif e.action == AuditAction.ACTION:
            sentence = f"{actor}: {after.get('action', 'action')} — {noun} {name}"
        else:
            sentence = f"{actor} {_VERBS.get(e.action, e.action)} {noun} {name}"
            if e.action == AuditAction.CREATE and e.object_type == "Membership" and after.get("role"):
                sentence += f" as {after['role']}"
        out.append((e, AuditEntryText(sentence=sentence, changes=changes)))
    return out


def team_ids_visible_to(membership: Membership) -> list[int]:
    """Teams a `member`-level user may see: the teams their membership is scoped to."""
    return list(membership.teams.values_list("pk", flat=True))
