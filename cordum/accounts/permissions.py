"""The role matrix: one table, checked by HTML views and API alike (never by templates alone)."""

from django.db import models

from cordum.accounts.choices import Role


class Perm(models.TextChoices):
    MANAGE_ORG = "manage_org", "Manage teams, members, agents, repositories and keys"
    VIEW_ADMIN_AUDIT = "view_admin_audit", "Read the admin audit log"
    VIEW_POLICIES = "view_policies", "Read policy repositories and versions"
    VIEW_AUDIT = "view_audit", "Read every team's evidence records"
    EXPORT_AUDIT = "export_audit", "Export evidence"
    VIEW_OWN_TEAM = "view_own_team", "Read one's own team's evidence"
    REVIEW_APPROVALS = "review_approvals", "Approve or deny pending calls"
    RUN_SIMULATION = "run_simulation", "Run simulations"
    VIEW_SIMULATION = "view_simulation", "Read simulation reports"
    MANAGE_ROLLOUT = "manage_rollout", "Start, promote, pause and roll back rollouts"
    VIEW_ROLLOUT = "view_rollout", "Read rollouts and the fleet"


ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.ADMIN: frozenset(Perm.values),
    Role.POLICY_AUTHOR: frozenset(
        {Perm.VIEW_POLICIES, Perm.RUN_SIMULATION, Perm.VIEW_SIMULATION, Perm.MANAGE_ROLLOUT,
         Perm.VIEW_ROLLOUT, Perm.VIEW_OWN_TEAM}
    ),
    Role.REVIEWER: frozenset({Perm.REVIEW_APPROVALS, Perm.VIEW_POLICIES, Perm.VIEW_OWN_TEAM}),
    Role.AUDITOR: frozenset(
        {Perm.VIEW_AUDIT, Perm.EXPORT_AUDIT, Perm.VIEW_POLICIES, Perm.VIEW_SIMULATION, Perm.VIEW_ROLLOUT,
         Perm.VIEW_ADMIN_AUDIT, Perm.VIEW_OWN_TEAM}
    ),
    Role.MEMBER: frozenset({Perm.VIEW_OWN_TEAM}),
}


def role_has(role: str, perm: str) -> bool:
    return perm in ROLE_PERMISSIONS.get(role, frozenset())
