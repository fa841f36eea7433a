"""Client for human approvals at the control plane.

POST /api/v1/approvals opens a request, GET /api/v1/approvals/{id}?wait=N long-polls its state, and
POST /api/v1/approvals/{id}/consume binds the approval to this exact call (args digest, session, tool) once.
The call is forwarded only after consume answers 200. If the agent cancels the call while it waits,
POST /api/v1/approvals/{id}/cancel withdraws the request. While waiting, `on_progress` is called every
`progress_interval` seconds (the proxy turns that into MCP `notifications/progress` for the agent).
Everything fails closed: a timeout, an unreachable control plane or an unexpected answer is a refusal, except
that a policy's `on_timeout: allow` lets the call through once nobody decided within its whole `timeout`
(see `allows_on_timeout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("cordum.sidecar.approvals")

ProgressCallback = Callable[[float, str], Awaitable[None] | None]


@dataclass
class ApprovalResult:
    outcome: str  # approved | denied | timed_out | expired | cancelled | error
    approval_id: str | None = None
    reviewer: str | None = None
    comment: str = ""
    detail: str = ""
    scope: str = "once"  # once | session: what the reviewer(s) approved
    target_pattern: str = ""  # for a session answer: the targets it covers (default: the call's own target)

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"

    def refusal_text(self, *, rule: str | None, reason: str, policy_version: str | None) -> str:
        who = f" by {self.reviewer}" if self.reviewer else ""
        because = f": {self.comment}" if self.comment else ""
        head = {
            "denied": f"Denied{who}{because}",
            "timed_out": "Approval timed out; denied (fail closed)",
            "expired": "Approval request expired; denied (fail closed)",
            "cancelled": "Approval request was cancelled; denied",
        }.get(self.outcome, f"Approval could not be obtained ({self.detail or self.outcome}); denied (fail closed)")
        return (f"{head}. Cordum policy rule {rule or 'defaults.decision'} requires approval: {reason} "
                f"(policy {policy_version})")


ALLOWED_ON_TIMEOUT = "allowed_on_timeout"  # the outcome recorded when `on_timeout: allow` lets a call through
ALLOWED_ON_TIMEOUT_COMMENT = ("no reviewer decided within the approval timeout; the policy's on_timeout: allow let "
                              "the call through")
# The decision record's fields an approval request carries (POST /api/v1/approvals).
APPROVAL_REQUEST_FIELDS = ("decision_id", "session_id", "server", "tool", "action", "target", "topic", "risk_tags",
                           "rule", "reason", "args_digest", "args", "policy_version")


def approval_request_payload(record: dict[str, Any], approval: dict[str, Any], *, tool: str,
                             arguments: dict[str, Any], root: str | None, compiled: Any = None) -> dict[str, Any]:
    """What a held call sends the control plane: its evidence fields (policy-redacted), what it would do from the
    real arguments (a write's diff, a shell command's programs with the one the rule is about marked; masked,
    and stored encrypted until decided), and the rule's approval settings. The proxy and the hook both send
    this; `compiled`, the policy in force, finds which program of a command line made the rule apply."""
    from cordum.sidecar.diffs import SHELL_TOOLS, shell_view, write_diff

    what = write_diff(tool=tool, arguments=arguments, root=root)
    command = (arguments or {}).get("command")
    if not what and tool in SHELL_TOOLS and isinstance(command, str) and command.strip() and compiled is not None:
        from cordum.policy import Call, evaluate

        def decide(program: str) -> str | None:
            return evaluate(compiled, Call(server=record.get("server") or "", tool=tool,
                                           arguments={**arguments, "command": program}, root=root)).rule

        what = shell_view(command=command, rule=record.get("rule"), decide=decide, root=root)
    payload = {k: record.get(k) for k in APPROVAL_REQUEST_FIELDS}
    payload.update(diff=what,
                   on_timeout=approval.get("on_timeout") or "deny",
                   reviewers=list(approval.get("reviewers") or ["role:reviewer"]),
                   allow_self_approval=bool(approval.get("allow_self_approval")),
                   session_approval=session_bound(approval),
                   approvals_required=int(approval.get("approvals_required") or 1))
    return payload


def session_bound(approval: dict[str, Any]) -> dict[str, int] | None:
    """The policy's bound on "approve for this session" ({max_calls, max_minutes}), or None: not allowed."""
    bound = approval.get("session_approval")
    if not isinstance(bound, dict):
        return None
    out = {k: int(bound[k]) for k in ("max_calls", "max_minutes") if isinstance(bound.get(k), int) and bound[k] > 0}
    return out or None


@dataclass
class SessionGrant:
    """"Approve for this session", learned from a reviewer's answer: later calls of the same session that the
    same rule holds, on the same server and tool, whose target the pattern covers, go through without a new
    request, until `max_calls` of them have or `max_minutes` have passed (the policy's bound)."""

    approval_id: str
    reviewer: str | None
    rule: str | None
    server: str
    tool: str
    target_pattern: str
    max_calls: int | None
    until: float | None  # deadline on the clock of the store that keeps it (SessionGrants.clock)
    used: int = 0

    def live(self, now: float) -> bool:
        return (self.max_calls is None or self.used < self.max_calls) and (self.until is None or now < self.until)

    def covers(self, *, rule: str | None, server: str, tool: str, target: str) -> bool:
        from cordum.policy.patterns import target_matches

        return (rule, server, tool) == (self.rule, self.server, self.tool) and target_matches(self.target_pattern,
                                                                                            target)

    def fact(self) -> dict[str, Any]:
        """What the evidence of a call let through by this grant says about it."""
        return {"approval_id": self.approval_id, "reviewer": self.reviewer or "", "scope": "session",
                "use": self.used, **({"max_calls": self.max_calls} if self.max_calls is not None else {})}

    def to_dict(self) -> dict[str, Any]:
        """What the spool keeps of it (everything but the use count, which it keeps itself)."""
        return {"approval_id": self.approval_id, "reviewer": self.reviewer, "rule": self.rule, "server": self.server,
                "tool": self.tool, "target_pattern": self.target_pattern, "max_calls": self.max_calls,
                "until": self.until}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, used: int = 0) -> SessionGrant:
        return cls(**{k: data.get(k) for k in ("approval_id", "reviewer", "rule", "server", "tool", "target_pattern",
                                                "max_calls", "until")}, used=used)

    def comment(self) -> str:
        of = f" of {self.max_calls}" if self.max_calls is not None else ""
        return (f"approved for this session by {self.reviewer or 'a reviewer'} (approval {self.approval_id}, "
                f"call {self.used}{of} under it)")


def session_grant_from(result: ApprovalResult, record: dict[str, Any], approval: dict[str, Any], *,
                       now: float | None = None) -> SessionGrant | None:
    """The grant a reviewer's session answer gives, bounded by the policy in force here; None for an answer that
    covers this call only, or when this sidecar's policy does not allow session answers (fail closed)."""
    bound = session_bound(approval)
    if not result.approved or result.scope != "session" or not result.approval_id or bound is None:
        return None
    now = time.monotonic() if now is None else now
    minutes = bound.get("max_minutes")
    return SessionGrant(approval_id=result.approval_id, reviewer=result.reviewer, rule=record.get("rule"),
                        server=str(record.get("server") or ""), tool=str(record.get("tool") or ""),
                        target_pattern=result.target_pattern or str(record.get("target") or ""),
                        max_calls=bound.get("max_calls"), until=now + minutes * 60 if minutes else None)


class SessionGrants:
    """The session answers in force, per session id, in this process's memory. Another session never sees them."""

    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        self._by_session: dict[str, list[SessionGrant]] = {}

    def add(self, session_id: str, grant: SessionGrant) -> None:
        self._by_session.setdefault(session_id, []).append(grant)

    def use(self, session_id: str, *, rule: str | None, server: str, tool: str, target: str,
            now: float | None = None) -> SessionGrant | None:
        """The grant that lets this call through (counted as used), or None."""
        grants = self._by_session.get(session_id)
        if not grants:
            return None
        now = time.monotonic() if now is None else now
        grants[:] = [g for g in grants if g.live(now)]
        for grant in grants:
            if grant.covers(rule=rule, server=server, tool=tool, target=target):
                grant.used += 1
                return grant
        if not grants:
            self._by_session.pop(session_id, None)
        return None

    def drop(self, session_id: str) -> None:
        self._by_session.pop(session_id, None)


def policy_timeout_seconds(approval: dict[str, Any]) -> float:
    return float(approval.get("timeout") or 900)


def allows_on_timeout(result: ApprovalResult, approval: dict[str, Any], *, waited_seconds: float) -> bool:
    """Whether the policy's `on_timeout: allow` lets this unanswered call through.

    Only a real timeout counts: the control plane expired the request, or the sidecar's wait reached its
    deadline. A denial, a cancellation or an unreachable control plane still refuses. And only when the wait
    covered the policy's whole `timeout`: a local cap that ends the wait earlier (`approvals.max_wait_seconds`,
    the hook's `approval_wait_seconds`) is not the policy's timeout, so it refuses (fail closed).
    """
    return (result.outcome in ("timed_out", "expired") and approval.get("on_timeout") == "allow"
            and waited_seconds >= policy_timeout_seconds(approval))


class ApprovalClient:
    def __init__(self, client: httpx.AsyncClient, *, poll_wait_seconds: int = 25,
                 progress_interval_seconds: float = 5.0, max_wait_seconds: float | None = None):
        self.client = client
        self.poll_wait_seconds = max(1, int(poll_wait_seconds))
        self.progress_interval_seconds = progress_interval_seconds
        self.max_wait_seconds = max_wait_seconds

    def wait_seconds(self, timeout_seconds: float) -> float:
        """How long a request with the policy's `timeout_seconds` is actually waited for (local cap applied)."""
        if self.max_wait_seconds is not None:
            return min(timeout_seconds, self.max_wait_seconds)
        return timeout_seconds

    async def _withdraw_once_opened(self, opening: asyncio.Future) -> None:
        with contextlib.suppress(Exception):
            opened = await asyncio.wait_for(opening, timeout=15.0)
            if opened.status_code in (200, 201):
                await self._cancel(str(opened.json().get("id")))

    async def request_and_wait(self, payload: dict[str, Any], *, timeout_seconds: float,
                               on_progress: ProgressCallback | None = None) -> ApprovalResult:
        """Open an approval and wait for the reviewer, the timeout, or a failure (all but approval refuse)."""
        timeout_seconds = self.wait_seconds(timeout_seconds)
        deadline = time.monotonic() + timeout_seconds
        body = dict(payload, timeout_seconds=int(max(1, round(timeout_seconds))))
        opening = asyncio.ensure_future(self.client.post("/api/v1/approvals", json=body, timeout=15.0))
        try:
            resp = await asyncio.shield(opening)
        except asyncio.CancelledError:  # cancelled while the request was being opened: withdraw it once it exists
            # shielded as a whole: a second cancellation must not abort the opening POST or the withdrawal
            await asyncio.shield(asyncio.ensure_future(self._withdraw_once_opened(opening)))
            raise
        except httpx.HTTPError as exc:
            return ApprovalResult("error", detail=f"control plane unreachable: {type(exc).__name__}")
        if resp.status_code not in (200, 201):
            return ApprovalResult("error", detail=f"control plane answered {resp.status_code}: {_msg(resp)}")
        approval_id = str(resp.json().get("id"))
        log.info("approval requested", extra={"approval_id": approval_id, "decision_id": payload.get("decision_id")})

        progress_task = None
        if on_progress is not None:
            progress_task = asyncio.create_task(self._progress(on_progress, approval_id, timeout_seconds))
        try:
            result = await self._wait(approval_id, deadline)
        except asyncio.CancelledError:  # the agent gave up (notifications/cancelled) or the sidecar stops
            await asyncio.shield(self._cancel(approval_id))
            raise
        finally:
            if progress_task is not None:
                progress_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await progress_task
        if not result.approved:
            return result
        consume = {k: payload.get(k) for k in ("args_digest", "session_id", "tool")}
        try:
            resp = await self.client.post(f"/api/v1/approvals/{approval_id}/consume", json=consume, timeout=15.0)
        except httpx.HTTPError as exc:
            return ApprovalResult("error", approval_id, result.reviewer,
                                  detail=f"could not consume the approval: {type(exc).__name__}")
        if resp.status_code != 200:
            return ApprovalResult("error", approval_id, result.reviewer,
                                  detail=f"approval could not be consumed ({resp.status_code}: {_msg(resp)})")
        return result

    async def _cancel(self, approval_id: str) -> None:
        """Tell the control plane nobody waits for this request any more (best effort)."""
        try:
            await self.client.post(f"/api/v1/approvals/{approval_id}/cancel", timeout=5.0)
            log.info("approval cancelled", extra={"approval_id": approval_id})
        except httpx.HTTPError as exc:
            log.warning("could not cancel approval", extra={"approval_id": approval_id, "error": str(exc)})

    async def _wait(self, approval_id: str, deadline: float) -> ApprovalResult:
        failures = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ApprovalResult("timed_out", approval_id)
            wait = max(1, min(self.poll_wait_seconds, int(remaining)))
            try:
                resp = await self.client.get(f"/api/v1/approvals/{approval_id}", params={"wait": wait},
                                             timeout=httpx.Timeout(10.0, read=wait + 10.0))
            except httpx.HTTPError as exc:
                failures += 1
                if failures >= 3:
                    return ApprovalResult("error", approval_id, detail=f"control plane unreachable: {type(exc).__name__}")
                await asyncio.sleep(min(2.0 * failures, max(0.0, deadline - time.monotonic())))
                continue
            if resp.status_code != 200:
                return ApprovalResult("error", approval_id, detail=f"control plane answered {resp.status_code}")
            failures = 0
            data = resp.json()
            state = data.get("state")
            if state == "pending":
                continue
            outcome = {"approved": "approved", "denied": "denied", "expired": "timed_out",
                       "cancelled": "cancelled"}.get(state, "error")
            return ApprovalResult(outcome, approval_id, data.get("reviewer"), data.get("comment") or "",
                                  detail="" if outcome != "error" else f"unknown state {state!r}",
                                  scope="session" if data.get("scope") == "session" else "once",
                                  target_pattern=str(data.get("target_pattern") or ""))

    async def _progress(self, on_progress: ProgressCallback, approval_id: str, timeout_seconds: float) -> None:
        start = time.monotonic()
        while True:
            waited = time.monotonic() - start
            left = max(0, int(timeout_seconds - waited))
            result = on_progress(waited, f"Waiting for human approval (request {approval_id}, {left}s left)")
            if asyncio.iscoroutine(result):
                await result
            await asyncio.sleep(self.progress_interval_seconds)


def _msg(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("message"))
    except ValueError:
        return resp.text[:200]



class SpoolSessionGrants:
    """Session answers kept in the spool, for agent hooks: each hook call is its own process, and the processes
    of one agent session share the spool. Deadlines are wall-clock times, since no process outlives its call."""

    clock = staticmethod(time.time)

    def __init__(self, spool: Any) -> None:
        self.spool = spool

    def add(self, session_id: str, grant: SessionGrant) -> None:
        self.spool.session_grant_add(session_id, grant.approval_id, grant.to_dict())

    def use(self, session_id: str, *, rule: str | None, server: str, tool: str, target: str,
            now: float | None = None) -> SessionGrant | None:
        now = time.time() if now is None else now

        def covers(data: dict[str, Any], used: int) -> bool:
            grant = SessionGrant.from_dict(data, used=used)
            return grant.live(now) and grant.covers(rule=rule, server=server, tool=tool, target=target)

        hit = self.spool.session_grant_use(session_id, covers)
        if hit is None:
            return None
        data, used = hit
        return SessionGrant.from_dict(data, used=used)
