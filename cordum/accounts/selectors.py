"""Reads for accounts, scoped to an organisation."""

from django.db.models import QuerySet

from cordum.accounts.models import AdminAuditLog, Agent, Membership, Organization, Team


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
    return (
        Membership.objects.filter(organization=organization)
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


def team_ids_visible_to(membership: Membership) -> list[int]:
    """Teams a `member`-level user may see: the teams their membership is scoped to."""
    return list(membership.teams.values_list("pk", flat=True))
