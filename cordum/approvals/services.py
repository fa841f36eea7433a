"""Writes for approvals: open a request, decide it (exactly once), consume it (exactly once), expire it.

Every state change is a conditional UPDATE on `state` (`filter(pk=..., state="pending").update(...)`),
so two reviewers clicking at once cannot both win: PostgreSQL re-checks the WHERE clause after the
first transaction commits, the second sees 0 rows changed and is told who decided. The decision
goes into the evidence trail in the same transaction, and waiting sidecars are woken after commit.
"""

import logging
import secrets
from datetime import timedelta

import httpx
from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from cordum.accounts.models import Agent, Membership
from cordum.approvals.choices import ApprovalScope, ApprovalState, ReviewDecision
from cordum.approvals.evidence import evidence_outcome_append
from cordum.approvals.models import ApprovalRequest, ApprovalVote
from cordum.approvals.selectors import DEFAULT_REVIEWERS, approval_reviewer_refusal
from cordum.common import telemetry
from cordum.common.crypto import token_digest
from cordum.common.errors import Conflict, CordumError
from cordum.common.notify import publish
from cordum.policy.patterns import target_pattern_error

logger = logging.getLogger(__name__)

MIN_TIMEOUT_SECONDS = 1
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
DEFAULT_TIMEOUT_SECONDS = 900


def approval_channel(approval_id) -> str:
    """Published when the request is decided, expired or cancelled (wakes `?wait=N` long-polls)."""
    return f"approval:{approval_id}"


def approvals_org_channel(organization_id) -> str:
    """Published when a request opens in the organisation (queues and tests can wait on it)."""
    return f"approvals:{organization_id}"


def _wake(approval_id) -> None:
    transaction.on_commit(lambda: publish(approval_channel(approval_id), "decided"))


def _reviewer_email(user) -> str:
    return (user.email or user.username).strip()


# --- open -------------------------------------------------------------------------------------
def approval_request_create(*, agent: Agent, data: dict) -> tuple[ApprovalRequest, bool]:
    """Open a request for a held call (or return the one already opened for this decision_id).

    `data` holds the contract's fields, already validated. Returns (request, created).
    """
    existing = ApprovalRequest.objects.filter(agent=agent, decision_id=data["decision_id"]).first()
    if existing is not None:
        return _expire_if_overdue(existing), False
    timeout = int(data.get("timeout_seconds") or DEFAULT_TIMEOUT_SECONDS)
    timeout = min(max(timeout, MIN_TIMEOUT_SECONDS), MAX_TIMEOUT_SECONDS)
    now = timezone.now()
    reviewers = [str(r).strip() for r in (data.get("reviewers") or DEFAULT_REVIEWERS) if str(r).strip()]
    approval = ApprovalRequest(
        organization_id=agent.organization_id,
        agent=agent,
        decision_id=data["decision_id"],
        session_id=data.get("session_id") or "",
        server=data.get("server") or "",
        tool=data["tool"],
        action=data.get("action") or "",
        target=data.get("target") or "",
        topic=data.get("topic") or "",
        risk_tags=list(data.get("risk_tags") or []),
        rule=data.get("rule") or "",
        reason=data.get("reason") or "",
        args_digest=data["args_digest"],
        args=data.get("args") or {},
        diff=ApprovalRequest.seal_diff(data.get("diff") or ""),
        policy_version=data.get("policy_version") or "",
        reviewers=reviewers or list(DEFAULT_REVIEWERS),
        allow_self_approval=bool(data.get("allow_self_approval", False)),
        on_timeout=data.get("on_timeout") or "deny",
        approvals_required=int(data.get("approvals_required") or 1),
        session_approval=data.get("session_approval") or None,
        created_at=now,
        expires_at=now + timedelta(seconds=timeout),
    )
    try:
        with transaction.atomic():
            approval.save(force_insert=True)
            transaction.on_commit(lambda: _enqueue_notify(approval.pk))
            transaction.on_commit(lambda: publish(approvals_org_channel(agent.organization_id), str(approval.pk)))
            transaction.on_commit(lambda: telemetry.approval_opened(organization_id=agent.organization_id))
    except IntegrityError:  # a concurrent retry of the same POST won the insert
        return ApprovalRequest.objects.get(agent=agent, decision_id=data["decision_id"]), False
    logger.info("approval %s opened by %s for %s %s", approval.pk, agent.name, approval.tool, approval.target)
    return approval, True


def _enqueue_notify(approval_id) -> None:
    from cordum.approvals.tasks import approval_notify_task

    try:
        approval_notify_task.delay(str(approval_id))
    except Exception:  # best effort: a broker outage must not fail the sidecar's request
        logger.warning("could not enqueue the notification for approval %s", approval_id, exc_info=True)


# --- decide -----------------------------------------------------------------------------------
def _already_decided_message(approval: ApprovalRequest) -> str:
    if approval.state == ApprovalState.EXPIRED:
        if approval.on_timeout == "allow":
            return ("This request expired before anyone decided; its policy says on_timeout: allow, so the "
                    "agent's call was let through.")
        return "This request expired before anyone decided; the agent's call was not run."
    if approval.state == ApprovalState.CANCELLED:
        return "The agent cancelled this request."
    when = timezone.localtime(approval.decided_at).strftime("%H:%M:%S %Z") if approval.decided_at else ""
    who = approval.reviewer_email or "another reviewer"
    return f"Already {approval.state} by {who}{f' at {when}' if when else ''}."


def approval_decide(
    *, approval: ApprovalRequest, membership: Membership | None, decision: str, comment: str = "",
    target_pattern: str = "",
) -> ApprovalRequest:
    """Answer a pending request: approve once, approve for this session, or deny.

    One deny ends it. An approval counts one reviewer; the request is approved once `approvals_required` distinct
    reviewers have approved (the agent's owner counts only where one approval suffices and the policy allows
    self-approval). The approval then covers the session only if every approver chose so. Exactly one final decision wins; later answers raise Conflict (409).
    """
    if decision not in ReviewDecision.values:
        raise CordumError("decision must be 'approve', 'approve_session' or 'deny'.", {"field": "decision"})
    refusal = approval_reviewer_refusal(approval=approval, membership=membership, decision=decision)
    if refusal:
        raise CordumError(refusal, {"reason": "not_allowed"}, status_code=403)
    pattern = _session_pattern(approval=approval, decision=decision, target_pattern=target_pattern)
    now = timezone.now()
    user = membership.user
    comment = (comment or "").strip()[:2000]
    with transaction.atomic():
        # The row lock serialises answers to one request: two reviewers approving at once are counted in turn.
        current = ApprovalRequest.objects.select_for_update().filter(pk=approval.pk).first()
        if current is None or current.state != ApprovalState.PENDING or current.expires_at <= now:
            changed = 0
        else:
            ApprovalVote.objects.update_or_create(
                approval=current, user=user,
                defaults={"reviewer_email": _reviewer_email(user), "decision": decision, "target_pattern": pattern,
                          "comment": comment, "created_at": now})
            changed = _conclude(current, now=now)
            if changed is None:  # approved by too few reviewers so far: stays pending
                transaction.on_commit(lambda: publish(approvals_org_channel(current.organization_id), str(current.pk)))
                approval.refresh_from_db()
                logger.info("approval %s: %s by %s, waiting for more reviewers", approval.pk, decision,
                            _reviewer_email(user))
                return approval
    if not changed:
        current = ApprovalRequest.objects.select_related("agent").get(pk=approval.pk)
        if current.state == ApprovalState.PENDING:  # pending but past its deadline: expire it now
            current = _expire(current.pk, now=now) or ApprovalRequest.objects.get(pk=approval.pk)
        raise Conflict(
            _already_decided_message(current),
            {"state": current.state, "reviewer": current.reviewer_email or None},
        )
    approval.refresh_from_db()
    logger.info("approval %s %s by %s", approval.pk, approval.state, approval.reviewer_email)
    return approval


def _session_pattern(*, approval: ApprovalRequest, decision: str, target_pattern: str) -> str:
    """The targets a session answer covers: the reviewer's pattern (it must cover this call) or the call's target."""
    if decision != ReviewDecision.APPROVE_SESSION:
        return ""
    pattern = (target_pattern or "").strip() or approval.target
    if len(pattern) > 1000:
        raise CordumError("target_pattern must be at most 1000 characters.", {"field": "target_pattern"})
    problem = target_pattern_error(pattern, approval.target)
    if problem:
        raise CordumError(f"{problem[0].upper()}{problem[1:]}.", {"field": "target_pattern"})
    return pattern


def _conclude(approval: ApprovalRequest, *, now) -> int | None:
    """Inside the locked transaction: the request's final state from its votes, written with its evidence.
    None while too few reviewers have approved; else the rows changed (1)."""
    votes = list(ApprovalVote.objects.filter(approval=approval).select_related("user"))
    deny = next((v for v in votes if not v.approves), None)
    approvers = [v for v in votes if v.approves]
    if deny is None and len(approvers) < (approval.approvals_required or 1):
        return None
    if deny is not None:
        fields = {"state": ApprovalState.DENIED, "reviewer": deny.user, "reviewer_email": deny.reviewer_email,
                  "comment": deny.comment}
    else:
        session = all(v.decision == ReviewDecision.APPROVE_SESSION for v in approvers)
        patterns = {v.target_pattern for v in approvers}
        fields = {
            "state": ApprovalState.APPROVED, "reviewer": approvers[-1].user,
            "reviewer_email": ", ".join(v.reviewer_email for v in approvers)[:254],
            "comment": "; ".join(f"{v.reviewer_email}: {v.comment}" if len(approvers) > 1 else v.comment
                                 for v in approvers if v.comment)[:2000],
            "scope": ApprovalScope.SESSION if session else ApprovalScope.ONCE,
            # approvers who chose different patterns agree on the call's own target
            "target_pattern": (patterns.pop() if len(patterns) == 1 else approval.target) if session else "",
        }
    changed = ApprovalRequest.objects.filter(pk=approval.pk, state=ApprovalState.PENDING, expires_at__gt=now).update(
        decided_at=now, diff="", **fields)
    if changed:
        approval.refresh_from_db()
        evidence_outcome_append(approval=approval, outcome=approval.state, at=now)
        _wake(approval.pk)
        transaction.on_commit(lambda: telemetry.approval_closed(approval=approval))
    return changed


# --- expire / cancel --------------------------------------------------------------------------
def _expire(approval_id, *, now) -> ApprovalRequest | None:
    """Pending and past its deadline -> expired, with its evidence outcome. None if someone else won."""
    with transaction.atomic():
        changed = ApprovalRequest.objects.filter(
            pk=approval_id, state=ApprovalState.PENDING, expires_at__lte=now
        ).update(state=ApprovalState.EXPIRED, decided_at=now, diff="")
        if not changed:
            return None
        approval = ApprovalRequest.objects.select_related("organization", "agent").get(pk=approval_id)
        evidence_outcome_append(approval=approval, outcome=ApprovalState.EXPIRED, at=now)
        _wake(approval_id)
        transaction.on_commit(lambda: telemetry.approval_closed(approval=approval))
    logger.info("approval %s expired", approval_id)
    return approval


def _expire_if_overdue(approval: ApprovalRequest) -> ApprovalRequest:
    if approval.is_overdue:
        expired = _expire(approval.pk, now=timezone.now())
        if expired is not None:
            return expired
        approval.refresh_from_db()
    return approval


def approval_refresh(*, approval: ApprovalRequest) -> ApprovalRequest:
    """The current state, deciding expiry on read (the beat task does it too, every 15 s)."""
    approval.refresh_from_db()
    return _expire_if_overdue(approval)


def approvals_expire_due(*, now=None, organization=None) -> int:
    """Expire every pending request past its deadline (of one organisation, or all). Returns how many."""
    now = now or timezone.now()
    due = ApprovalRequest.objects.filter(state=ApprovalState.PENDING, expires_at__lte=now)
    if organization is not None:
        due = due.filter(organization=organization)
    due = due.values_list("pk", flat=True)
    return sum(1 for pk in list(due) if _expire(pk, now=now) is not None)


@transaction.atomic
def approval_cancel(*, approval: ApprovalRequest, agent: Agent) -> ApprovalRequest:
    """The sidecar gave up waiting (the agent went away): pending -> cancelled."""
    now = timezone.now()
    changed = ApprovalRequest.objects.filter(pk=approval.pk, agent=agent, state=ApprovalState.PENDING).update(
        state=ApprovalState.CANCELLED, decided_at=now, diff=""
    )
    approval.refresh_from_db()
    if changed:
        evidence_outcome_append(approval=approval, outcome=ApprovalState.CANCELLED, at=now)
        _wake(approval.pk)
        transaction.on_commit(lambda: telemetry.approval_closed(approval=approval))
    return approval


# --- consume ----------------------------------------------------------------------------------
def approval_consume(
    *, approval: ApprovalRequest, agent: Agent, args_digest: str, session_id: str, tool: str
) -> ApprovalRequest:
    """Use an approval for the call it covers, once. 400 if the call differs, 409 if used or not approved."""
    if approval.agent_id != agent.pk:
        raise CordumError("Approval request not found.", status_code=404)
    mismatched = [
        name
        for name, given, bound in (
            ("args_digest", args_digest, approval.args_digest),
            ("session_id", session_id, approval.session_id),
            ("tool", tool, approval.tool),
        )
        if (given or "") != (bound or "")
    ]
    if mismatched:
        raise CordumError(
            f"This approval covers a different call ({', '.join(mismatched)} differs); "
            "an altered call needs a new approval.",
            {"fields": mismatched},
        )
    approval = _expire_if_overdue(approval)
    if approval.state != ApprovalState.APPROVED:
        raise Conflict(f"The request is {approval.state}, not approved; the call must not run.",
                       {"state": approval.state})
    now = timezone.now()
    changed = ApprovalRequest.objects.filter(
        pk=approval.pk, state=ApprovalState.APPROVED, consumed_at__isnull=True
    ).update(consumed_at=now)
    approval.refresh_from_db()
    if not changed:
        raise Conflict(
            f"This approval was already used at {approval.consumed_at:%Y-%m-%d %H:%M:%S} UTC; "
            "a replayed call needs a new approval.",
            {"state": approval.state, "consumed_at": approval.consumed_at.isoformat()},
        )
    return approval


# --- notify -----------------------------------------------------------------------------------
LINK_SALT = "cordum.approvals.link"


def approval_link_issue(*, approval: ApprovalRequest) -> str:
    """A signed, single-use link to the request's card (only its digest is stored; a new one replaces it)."""
    token = signing.dumps({"a": str(approval.pk), "n": secrets.token_urlsafe(16)}, salt=LINK_SALT)
    ApprovalRequest.objects.filter(pk=approval.pk).update(link_digest=token_digest(token), link_used_at=None)
    base = getattr(settings, "CORDUM_PUBLIC_URL", "").rstrip("/")
    return f"{base}{reverse('approvals:link', args=[token])}"


def approval_link_request(*, token: str) -> ApprovalRequest:
    """The request a notification link names; CordumError if the link is forged or was replaced."""
    try:
        data = signing.loads(token, salt=LINK_SALT)
    except signing.BadSignature:
        raise CordumError("This approval link is not valid.", status_code=404) from None
    approval = ApprovalRequest.objects.filter(pk=data.get("a"), link_digest=token_digest(token)).first()
    if approval is None:
        raise CordumError("This approval link was replaced by a newer one; open the request from the queue.",
                          status_code=410)
    return approval


def approval_link_spend(*, approval: ApprovalRequest) -> None:
    """Use the link once (by a reader the caller has let see the request); CordumError (410) the second time."""
    spent = ApprovalRequest.objects.filter(pk=approval.pk, link_digest=approval.link_digest,
                                           link_used_at__isnull=True).update(link_used_at=timezone.now())
    if not spent:
        raise CordumError("This approval link was already used; open the request from the queue.", status_code=410)


def approval_notification_text(*, approval: ApprovalRequest) -> str:
    """Slack-compatible text with a new single-use link to the card (it replaces any earlier one). Names the call,
    never its arguments (they may hold secrets)."""
    link = approval_link_issue(approval=approval)
    what = approval.action or f"{approval.server}.{approval.tool}".strip(".")
    target = f" on {approval.target}" if approval.target else ""
    rule = f" (rule {approval.rule}: {approval.reason})" if approval.rule else (
        f" ({approval.reason})" if approval.reason else ""
    )
    minutes = max(1, int((approval.expires_at - approval.created_at).total_seconds() // 60))
    return (
        f":hourglass: Approval needed: agent *{approval.agent.name}* wants to run `{what}`{target}{rule}. "
        f"Reviewers: {', '.join(approval.reviewers)}. Expires in {minutes} min. Review: {link}"
    )


def approval_notify(*, approval: ApprovalRequest) -> bool:
    """POST {"text": ...} to the organisation's webhook. Best effort: True if it was delivered."""
    url = approval.organization.notification_webhook_url
    if not url:
        return False
    try:
        response = httpx.post(url, json={"text": approval_notification_text(approval=approval)}, timeout=5.0)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        # The webhook URL is itself a secret (Slack puts the token in the path): log its host only.
        status = getattr(getattr(exc, "response", None), "status_code", None)
        logger.warning("approval %s: webhook delivery to %s failed: %s%s", approval.pk,
                       httpx.URL(url).host, type(exc).__name__, f" (HTTP {status})" if status else "")
        return False
    return True
