"""Reads for approvals: who may decide a request, the reviewer's queue, the history."""

from datetime import timedelta

from django.db.models import Count, Q, QuerySet, prefetch_related_objects

from cordum.accounts.choices import Role
from cordum.accounts.models import Membership, Organization
from cordum.accounts.permissions import Perm
from cordum.approvals.choices import APPROVING, DECIDED_STATES, ApprovalState, ReviewDecision
from cordum.approvals.models import ApprovalRequest

DEFAULT_REVIEWERS = ("role:reviewer",)


def reviewer_spec_matches(*, spec: str, membership: Membership) -> bool:
    """One entry of the policy's `reviewers` list against a member.

    `role:<role>` — members with that role (admins hold every role's rights, so they match too);
    `team:<slug>` — members scoped to that team; `user:<email or username>` — that person.
    """
    kind, _, value = spec.strip().partition(":")
    value = value.strip().lower()
    kind = kind.strip().lower()
    if not value:
        return False
    if kind == "role":
        return membership.role == value or membership.role == Role.ADMIN
    if kind == "team":
        return any(team.slug.lower() == value for team in membership.teams.all())
    if kind == "user":
        user = membership.user
        return value in {(user.email or "").lower(), user.username.lower()}
    return False


def approval_reviewer_refusal(
    *, approval: ApprovalRequest, membership: Membership | None, decision: str = ReviewDecision.APPROVE
) -> str | None:
    """Why this member may not take `decision` on the request, or None when they may."""
    if membership is None or membership.organization_id != approval.organization_id:
        return "You are not a member of this request's organisation."
    if not membership.has_perm(Perm.REVIEW_APPROVALS):
        return f"Your role ({membership.role}) does not allow reviewing approvals."
    specs = approval.reviewers or list(DEFAULT_REVIEWERS)
    matched = [spec for spec in specs if reviewer_spec_matches(spec=spec, membership=membership)]
    if not matched:
        return f"This request is for reviewers {', '.join(specs)}; you are not one of them."
    if all(_is_role_spec(spec) for spec in matched):
        refusal = _team_scope_refusal(approval=approval, membership=membership)
        if refusal:
            return refusal
    if decision in APPROVING:
        return _approve_refusal(approval=approval, membership=membership, decision=decision)
    return None


def _approve_refusal(*, approval: ApprovalRequest, membership: Membership, decision: str) -> str | None:
    """The checks only approving has: self-approval, the two-person rule, the scope the policy allows."""
    owner_id = approval.agent.owner_id if approval.agent_id else None
    required = approval.approvals_required or 1
    if owner_id is not None and owner_id == membership.user_id:
        if required > 1:
            return (f"You own the agent {approval.agent.name}: {required} other reviewers must approve its request "
                    "(the agent's owner never counts toward a multi-person approval). You may still deny it.")
        if not approval.allow_self_approval:
            return (
                f"You own the agent {approval.agent.name}: another reviewer must approve its request "
                "(the policy does not allow self-approval). You may still deny it."
            )
    if any(vote.user_id == membership.user_id for vote in approval.votes.all()):
        left = required - sum(1 for vote in approval.votes.all() if vote.approves)
        return (f"You approved this already; it needs {left} more approval{'s' if left != 1 else ''} from "
                "other reviewers. You may still deny it." if left > 0 else "You answered this request already.")
    if decision == ReviewDecision.APPROVE_SESSION and not approval.session_approval:
        return "The policy does not allow approving this rule for a whole session; approve once or deny."
    return None


def _is_role_spec(spec: str) -> bool:
    return spec.strip().lower().startswith("role:")


def _team_scope_refusal(*, approval: ApprovalRequest, membership: Membership) -> str | None:
    """A reviewer scoped to teams reviews, by role alone, only calls of agents in those teams.

    The same scope hides other teams' evidence from them. Admins and reviewers without a team are
    organisation-wide; a policy that names the person (`user:`) or their team (`team:`) chose them outright.
    """
    teams = _review_scope(membership)
    if teams is None:
        return None
    scoped = {team.pk: team.slug for team in teams}
    agent_team_id = approval.agent.team_id if approval.agent_id else None
    if agent_team_id in scoped:
        return None
    theirs = approval.agent.team.slug if agent_team_id else "no team"
    return (f"You review for {', '.join(sorted(scoped.values()))}; this call comes from "
            f"{approval.agent.name} ({theirs}).")


def _base(organization: Organization) -> QuerySet[ApprovalRequest]:
    return ApprovalRequest.objects.filter(organization=organization).select_related(
        "agent", "agent__owner", "agent__team", "reviewer"
    ).prefetch_related("votes")


def _review_scope(membership: Membership) -> list | None:
    """None: every team's requests; else the teams the member is scoped to (the scope of their evidence)."""
    if membership.team_scope() is None:
        return None
    return list(membership.teams.all())


def approvals_visible(*, membership: Membership) -> QuerySet[ApprovalRequest]:
    """Requests a member may open: their teams' agents', ones naming them or their team, ones they decided.

    The same scope as their evidence, so a team-scoped reviewer cannot read another team's arguments and diffs.
    """
    qs = _base(membership.organization)
    teams = _review_scope(membership)
    if teams is None:
        return qs
    user = membership.user
    named = Q(reviewer_id=user.pk) | Q(agent__team__in=teams)
    for spec in [f"user:{user.username}", *([f"user:{user.email}"] if user.email else []),
                 *(f"team:{team.slug}" for team in teams)]:
        named |= Q(reviewers__icontains=f'"{spec}"')
    return qs.filter(named)


def approval_get(*, membership: Membership, pk) -> ApprovalRequest | None:
    return approvals_visible(membership=membership).filter(pk=pk).first()


def approval_diff_for(*, approval: ApprovalRequest, membership: Membership | None) -> str:
    """The real diff in clear, only for a member eligible to decide this request; "" for anyone else.

    Wider visibility (an organisation-wide reviewer browsing another team's request) shows the policy-redacted
    arguments, never the real content the sidecar sent for the eligible reviewers.
    """
    if approval_reviewer_refusal(approval=approval, membership=membership, decision=ReviewDecision.DENY):
        return ""
    return approval.diff_text


def approval_card(*, approval: ApprovalRequest, membership: Membership) -> dict:
    """What one member may do with a request and may see on its card.

    {"approval", "can_approve", "can_approve_session", "can_deny", "note", "diff", "approvers"}: the diff only
    for a member eligible to decide it; `approvers` lists who approved so far (the two-person rule)."""
    approve_refusal = approval_reviewer_refusal(approval=approval, membership=membership)
    deny_refusal = approval_reviewer_refusal(approval=approval, membership=membership, decision=ReviewDecision.DENY)
    session_refusal = approval_reviewer_refusal(approval=approval, membership=membership,
                                                decision=ReviewDecision.APPROVE_SESSION)
    return {"approval": approval, "can_approve": approve_refusal is None, "can_deny": deny_refusal is None,
            "can_approve_session": session_refusal is None,
            "note": approve_refusal or deny_refusal or "",
            "diff": approval.diff_text if deny_refusal is None else "",
            "approvers": [vote for vote in approval.votes.all() if vote.approves]}


def approval_queue_for_reviewer(*, membership: Membership, filters: dict | None = None) -> list[dict]:
    """Pending requests this member is named for, the one about to expire first, each as `approval_card`.

    Requests whose reviewer list does not name the member are left out. `filters` narrows by team (slug),
    agent (name) and rule (id). Overdue requests are expired by the caller's service before listing (expiry is
    also decided on read).
    """
    prefetch_related_objects([membership], "teams")  # one query for every spec check below
    items = []
    pending = approvals_visible(membership=membership).filter(state=ApprovalState.PENDING)
    pending = _queue_filtered(pending, filters or {}).order_by("expires_at", "created_at")
    for approval in pending:
        if approval_reviewer_refusal(approval=approval, membership=membership, decision=ReviewDecision.DENY):
            continue
        items.append(approval_card(approval=approval, membership=membership))
    return items


QUEUE_FILTERS = ("team", "agent", "rule")


def _queue_filtered(qs: QuerySet[ApprovalRequest], filters: dict) -> QuerySet[ApprovalRequest]:
    if filters.get("team"):
        qs = qs.filter(agent__team__slug=filters["team"])
    if filters.get("agent"):
        qs = qs.filter(agent__name=filters["agent"])
    if filters.get("rule"):
        qs = qs.filter(rule=filters["rule"])
    return qs


def approval_queue_groups(items: list[dict]) -> list[dict]:
    """The queue grouped by agent session, the group whose first request expires soonest first (items keep
    their order): [{"session_id", "agent", "items"}]."""
    groups: dict[tuple, dict] = {}
    for item in items:
        a = item["approval"]
        key = (a.agent_id, a.session_id)
        groups.setdefault(key, {"session_id": a.session_id, "agent": a.agent, "items": []})["items"].append(item)
    return list(groups.values())


def approval_queue_choices(*, membership: Membership) -> dict:
    """The values the queue's filters offer: teams, agents and rules of the requests pending for this member."""
    pending = approvals_visible(membership=membership).filter(state=ApprovalState.PENDING)
    return {
        "team": sorted({slug for slug in pending.values_list("agent__team__slug", flat=True) if slug}),
        "agent": sorted(set(pending.values_list("agent__name", flat=True))),
        "rule": sorted({rule for rule in pending.values_list("rule", flat=True) if rule}),
    }


def approval_history_list(*, membership: Membership, filters: dict | None = None) -> QuerySet[ApprovalRequest]:
    filters = filters or {}
    qs = approvals_visible(membership=membership).filter(state__in=DECIDED_STATES)
    if filters.get("state") in DECIDED_STATES:
        qs = qs.filter(state=filters["state"])
    if filters.get("agent"):
        qs = qs.filter(agent__name=filters["agent"])
    return qs.order_by("-decided_at", "-created_at")


# --- context on the card ----------------------------------------------------------------------
TIMELINE_CALLS = 8


def approval_session_timeline(*, approval: ApprovalRequest, membership: Membership) -> list[dict]:
    """The session's latest calls up to this one (oldest first), from the evidence this member may read: each
    {"record", "outcomes": [(outcome, reviewer)], "this": bool}. Empty when they may read none of it."""
    from django.core.exceptions import PermissionDenied

    from cordum.decisions.choices import RecordType
    from cordum.decisions.selectors import attach_linked_outcomes, evidence_visible

    if not approval.session_id:
        return []
    try:
        visible = evidence_visible(membership=membership)
    except PermissionDenied:
        return []
    records = list(
        visible.filter(session_id=approval.session_id, record_type=RecordType.DECISION, agent_id=approval.agent_id,
                       timestamp__lte=approval.created_at + timedelta(seconds=5))
        .only("decision_id", "timestamp", "action", "tool", "server", "target", "decision", "rule", "outcome",
              "reviewer", "record_type", "facts")
        .order_by("-timestamp", "-seq")[:TIMELINE_CALLS]
    )
    records.reverse()
    attach_linked_outcomes(membership=membership, records=records)
    return [{"record": r, "outcomes": [(r.outcome, r.reviewer or "")] if r.outcome else r.linked_outcomes,
             "this": r.decision_id == approval.decision_id} for r in records]


def target_family(target: str) -> str:
    """The target pattern past decisions are compared on: the target's folder (`src/app.py` -> `src/*`,
    `origin/main` -> `origin/*`), or the target itself when it has none."""
    head, sep, _tail = (target or "").rpartition("/")
    return f"{head}{sep}*" if sep and head else target or ""


def approval_similar_decisions(*, approval: ApprovalRequest, membership: Membership) -> dict:
    """Past answers on the same rule and target pattern that this member may read: how many approved and denied,
    by whom, and when last. {"pattern", "approved", "denied", "reviewers": [email, ...], "last": request|None}."""
    pattern = target_family(approval.target)
    qs = approvals_visible(membership=membership).filter(
        rule=approval.rule, tool=approval.tool, state__in=(ApprovalState.APPROVED, ApprovalState.DENIED),
    ).exclude(pk=approval.pk)
    qs = qs.filter(target__startswith=pattern[:-1]) if pattern.endswith("*") else qs.filter(target=pattern)
    counts = dict(qs.order_by().values_list("state").annotate(n=Count("pk")))
    reviewers = [email for joined in qs.order_by("-decided_at").values_list("reviewer_email", flat=True)[:50]
                 for email in joined.split(", ") if email]  # a two-person approval names both
    return {"pattern": pattern, "approved": counts.get(ApprovalState.APPROVED, 0),
            "denied": counts.get(ApprovalState.DENIED, 0),
            "reviewers": list(dict.fromkeys(reviewers))[:5], "last": qs.order_by("-decided_at").first()}


def approval_context(*, approval: ApprovalRequest, membership: Membership) -> dict:
    return {"timeline": approval_session_timeline(approval=approval, membership=membership),
            "similar": approval_similar_decisions(approval=approval, membership=membership)}
