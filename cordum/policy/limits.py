"""Runtime limits per agent session (pure, in-memory, thread-safe), used by the sidecar.

`check(session_id, decision, now)` is atomic: when the call is within every limit it is counted and
None is returned; otherwise nothing is counted and a deny Decision names the limit that was hit
(rule "limits.session.max_calls", "limits.session.max_duration", "limits.session.max_writes",
"limits.rate.per_minute", "limits.rule.<id>.max_calls" or "limits.rule.<id>.per_minute").
Calls the policy already denies are neither limited nor counted.

`export_session(session_id, now=)` / `import_session(session_id, data)` move one session's counters out of and
into a tracker as a JSON-able dict (`SessionCounters.to_dict` / `from_dict`), so a process that lives for one
call (the agent hook) can keep a session's counters elsewhere and still let `check` decide.

`may_limit(calls=, duration=, writes=, busiest=)` answers, from a session's aggregates alone, whether
`check` could deny any of its calls; the simulation uses it to skip replaying sessions that cannot.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque

from .engine import CompiledPolicy, Decision

__all__ = ["LimitsTracker", "SessionCounters"]


def _fmt_duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


@dataclasses.dataclass
class SessionCounters:
    started: float
    last_seen: float
    calls: int = 0
    writes: int = 0
    recent: deque = dataclasses.field(default_factory=deque)  # timestamps within the last minute
    rule_calls: dict = dataclasses.field(default_factory=dict)
    rule_recent: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able: floats, ints, lists and string-keyed dicts only."""
        return {"started": self.started, "last_seen": self.last_seen, "calls": self.calls, "writes": self.writes,
                "recent": list(self.recent), "rule_calls": dict(self.rule_calls),
                "rule_recent": {k: list(q) for k, q in self.rule_recent.items() if q}}

    @classmethod
    def from_dict(cls, data: dict) -> SessionCounters:
        """The inverse of `to_dict`; ValueError when `data` is not such a dict."""
        try:
            return cls(started=float(data["started"]), last_seen=float(data["last_seen"]),
                       calls=int(data.get("calls", 0)), writes=int(data.get("writes", 0)),
                       recent=deque(float(t) for t in data.get("recent", ())),
                       rule_calls={str(k): int(v) for k, v in dict(data.get("rule_calls") or {}).items()},
                       rule_recent={str(k): deque(float(t) for t in v)
                                    for k, v in dict(data.get("rule_recent") or {}).items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a session's limit counters: {exc}") from exc


class LimitsTracker:
    def __init__(self, compiled: CompiledPolicy) -> None:
        self.compiled = compiled
        limits = compiled.policy.limits
        self.max_calls = limits.session.max_calls
        self.max_duration = limits.session.max_duration
        self.max_writes = limits.session.max_writes
        self.per_minute = limits.rate.per_minute
        self.rule_limits = {r.id: r.limits for r in compiled.policy.rules if r.limits is not None}
        self._sessions: dict[str, SessionCounters] = {}
        self._lock = threading.Lock()

    @property
    def has_limits(self) -> bool:
        """True when the policy sets any limit (otherwise `check` never denies)."""
        return bool(self.rule_limits) or any(v is not None for v in (
            self.max_calls, self.max_duration, self.max_writes, self.per_minute))

    # Timestamps are float epoch seconds here; a session's duration measured elsewhere (SQL intervals, datetimes)
    # may differ from `now - started` by float rounding (< 1 µs), so durations this close to the limit count.
    DURATION_SLACK = 1e-3

    def may_limit(
        self, *, calls: int, duration: float, writes: int | None = None, busiest: tuple[int, float] | None = None
    ) -> bool:
        """Could `check` deny any call of a session with these aggregates? False only when provably not.

        calls: the session's calls (denied ones included: an upper bound of what `check` counts); duration:
        seconds from its first to its last call; writes: an upper bound of its write calls (default: calls);
        busiest: (n, period) — at most n calls fell in any one epoch-aligned UTC period of `period` seconds
        (default: all calls in one). A denial needs one more counted call than a limit allows before it:
        calls > max_calls, writes > max_writes, more than per_minute calls within 60 s (a 60 s window, plus
        rounding, touches at most 60 // period + 2 periods) or a call later than max_duration after the
        first. Per-rule limits are bounded by the same figures (a rule's calls are among the session's).
        Conservative by design: when in doubt, True.
        """
        if calls <= 0:
            return False
        writes = calls if writes is None else min(writes, calls)
        in_a_minute = calls
        if busiest is not None:
            n, period = busiest
            in_a_minute = min(calls, n * (int((60.0 + self.DURATION_SLACK) // period) + 2))
        if self.max_duration is not None and duration + self.DURATION_SLACK > self.max_duration:
            return True
        if self.max_calls is not None and calls > self.max_calls:
            return True
        if self.max_writes is not None and writes > self.max_writes:
            return True
        if self.per_minute is not None and in_a_minute > self.per_minute:
            return True
        for rl in self.rule_limits.values():
            if rl.max_calls is not None and calls > rl.max_calls:
                return True
            if rl.per_minute is not None and in_a_minute > rl.per_minute:
                return True
        return False

    def _deny(self, decision: Decision, rule: str, reason: str) -> Decision:
        return dataclasses.replace(decision, decision="deny", rule=rule, reason=reason, approval=None)

    @staticmethod
    def _trim(q: deque, now: float) -> None:
        while q and q[0] <= now - 60.0:
            q.popleft()

    def check(self, session_id: str, decision: Decision, now: float, *, record: bool = True) -> Decision | None:
        """None when the call is within limits (and then counts it, unless record=False)."""
        if decision.decision == "deny":
            return None
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                s = SessionCounters(started=now, last_seen=now)
                if record:
                    self._sessions[session_id] = s
            if self.max_duration is not None and now - s.started > self.max_duration:
                return self._deny(
                    decision, "limits.session.max_duration",
                    f"Session limit reached: sessions may last at most {_fmt_duration(self.max_duration)} "
                    f"(max_duration); start a new session",
                )
            if self.max_calls is not None and s.calls >= self.max_calls:
                return self._deny(
                    decision, "limits.session.max_calls",
                    f"Session limit reached: at most {self.max_calls} tool calls per session (max_calls)",
                )
            if decision.is_write and self.max_writes is not None and s.writes >= self.max_writes:
                return self._deny(
                    decision, "limits.session.max_writes",
                    f"Session limit reached: at most {self.max_writes} writes per session (max_writes)",
                )
            self._trim(s.recent, now)
            if self.per_minute is not None and len(s.recent) >= self.per_minute:
                return self._deny(
                    decision, "limits.rate.per_minute",
                    f"Rate limit reached: at most {self.per_minute} tool calls per minute (rate.per_minute)",
                )
            rl = self.rule_limits.get(decision.rule) if decision.rule else None
            if rl is not None:
                rq = s.rule_recent.setdefault(decision.rule, deque())
                self._trim(rq, now)
                if rl.max_calls is not None and s.rule_calls.get(decision.rule, 0) >= rl.max_calls:
                    return self._deny(
                        decision, f"limits.rule.{decision.rule}.max_calls",
                        f"Rule limit reached: rule '{decision.rule}' allows at most {rl.max_calls} calls per session",
                    )
                if rl.per_minute is not None and len(rq) >= rl.per_minute:
                    return self._deny(
                        decision, f"limits.rule.{decision.rule}.per_minute",
                        f"Rule rate limit reached: rule '{decision.rule}' allows at most {rl.per_minute} calls per minute",
                    )
            if record:
                self._count(s, decision, now)
            return None

    def _count(self, s: SessionCounters, decision: Decision, now: float) -> None:
        s.calls += 1
        s.last_seen = now
        if decision.is_write:
            s.writes += 1
        s.recent.append(now)
        if decision.rule in self.rule_limits:
            s.rule_calls[decision.rule] = s.rule_calls.get(decision.rule, 0) + 1
            s.rule_recent.setdefault(decision.rule, deque()).append(now)

    def record(self, session_id: str, decision: Decision, now: float) -> None:
        """Count a call without checking (e.g. one that was allowed by check(record=False))."""
        with self._lock:
            s = self._sessions.setdefault(session_id, SessionCounters(started=now, last_seen=now))
            self._count(s, decision, now)

    def snapshot(self, session_id: str, now: float | None = None) -> dict:
        """Counters for heartbeats and status pages."""
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                return {"calls": 0, "writes": 0, "calls_last_minute": 0, "started": None}
            if now is not None:
                self._trim(s.recent, now)
            return {"calls": s.calls, "writes": s.writes, "calls_last_minute": len(s.recent), "started": s.started}

    def export_session(self, session_id: str, now: float | None = None) -> dict | None:
        """One session's counters as a JSON-able dict (None if it has none); with `now`, timestamps that no
        longer count towards a per-minute limit are left out."""
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                return None
            if now is not None:
                self._trim(s.recent, now)
                for q in s.rule_recent.values():
                    self._trim(q, now)
            return s.to_dict()

    def import_session(self, session_id: str, data: dict) -> None:
        """Replace one session's counters with `data` (from `export_session`, possibly of another process)."""
        counters = SessionCounters.from_dict(data)
        with self._lock:
            self._sessions[session_id] = counters

    def carry_over(self, previous: LimitsTracker) -> None:
        """Go on counting the sessions `previous` counted (the tracker of the policy version this one replaces):
        a rollout or rollback must not hand every running session a fresh budget. Hook sessions, whose counters
        live in the spool, carry over the same way."""
        with previous._lock:
            sessions = {k: SessionCounters.from_dict(s.to_dict()) for k, s in previous._sessions.items()}
        with self._lock:
            self._sessions.update(sessions)

    def end_session(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def prune(self, now: float, idle_seconds: float = 86400.0) -> int:
        """Forget sessions idle for longer than idle_seconds; returns how many were dropped."""
        with self._lock:
            stale = [k for k, s in self._sessions.items() if now - s.last_seen > idle_seconds]
            for k in stale:
                del self._sessions[k]
            return len(stale)
