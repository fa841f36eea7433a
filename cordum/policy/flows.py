"""Session data-flow state (pure, in-memory, thread-safe): which labels earlier calls of a session have set.

A policy's `labels:` entries say which calls set a label (`Decision.labels`); rules with `match.after` decide a
later call of the same session differently once one of their labels is set (`evaluate(..., session=...)`). This
tracker is the session state between the two: `record` a call's labels when the call runs (the sidecar: when
it forwards the call), and pass `labels(session_id)` to the next evaluation. Each label keeps the origin of the
earliest call that set it ({decision_id, server, tool, target, timestamp}), which the deciding rule's reason
names.

`export_session` / `import_session` move one session's labels out of and into a tracker as a JSON-able dict, so
a process that lives for one call (the agent hook) keeps them in its spool between calls; `carry_over` keeps
them when a new policy version replaces the one in force.
"""

from __future__ import annotations

import threading
import time

__all__ = ["ORIGIN_KEYS", "SessionFlows", "flow_facts", "label_origin"]

ORIGIN_KEYS = ("decision_id", "server", "tool", "target", "timestamp")


def label_origin(*, decision_id: str, server: str, tool: str, target: str, timestamp: str) -> dict[str, str]:
    """The origin of a label, as decisions and evidence name it."""
    return {"decision_id": decision_id, "server": server, "tool": tool, "target": target[:256],
            "timestamp": timestamp}


def flow_facts(flow: dict | None, labels: tuple[str, ...] | list[str]) -> dict:
    """The evidence `facts` of session data-flow: the labels a call sets once it runs, and for a call decided by
    a rule that waited for a label (`Decision.flow`), that label, the rule and the earlier call that set it."""
    facts: dict = {}
    if labels:
        facts["labels"] = list(labels)
    if flow is not None:
        facts["flow"] = {"label": flow["label"], "rule": flow["rule"], "set_by": dict(flow.get("set_by") or {})}
    return facts


class SessionFlows:
    def __init__(self) -> None:
        self._sessions: dict[str, dict[str, dict]] = {}
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def labels(self, session_id: str) -> dict[str, dict] | None:
        """The session's labels (label -> origin), or None when it has none. The dict is a copy."""
        with self._lock:
            held = self._sessions.get(session_id)
            return dict(held) if held else None

    def record(self, session_id: str, labels: tuple[str, ...] | list[str], origin: dict,
               now: float | None = None) -> list[str]:
        """Set `labels` for the session (a label already set keeps its first origin); returns the new ones."""
        if not labels:
            return []
        with self._lock:
            held = self._sessions.setdefault(session_id, {})
            self._seen[session_id] = time.time() if now is None else now
            new = [label for label in labels if label not in held]
            for label in new:
                held[label] = {k: str(origin.get(k) or "") for k in ORIGIN_KEYS}
            return new

    def export_session(self, session_id: str) -> dict | None:
        with self._lock:
            held = self._sessions.get(session_id)
            return {label: dict(o) for label, o in held.items()} if held else None

    def import_session(self, session_id: str, data: dict) -> None:
        """Replace one session's labels with `data` (from `export_session`); ValueError when it is not such a dict."""
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in data.items()):
            raise ValueError("not a session's flow labels")
        with self._lock:
            self._sessions[session_id] = {k: {f: str(v.get(f) or "") for f in ORIGIN_KEYS} for k, v in data.items()}
            self._seen[session_id] = time.time()

    def carry_over(self, previous: SessionFlows) -> None:
        """Keep the labels `previous` (the tracker of the version this one replaces) holds: a policy update does
        not make a session forget that it read a secret."""
        with previous._lock:
            sessions = {k: {lb: dict(o) for lb, o in v.items()} for k, v in previous._sessions.items()}
            seen = dict(previous._seen)
        with self._lock:
            for k, v in sessions.items():
                self._sessions.setdefault(k, {}).update({lb: o for lb, o in v.items()
                                                         if lb not in self._sessions.get(k, {})})
            self._seen.update(seen)

    def end_session(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
            self._seen.pop(session_id, None)

    def prune(self, now: float, idle_seconds: float = 86400.0) -> int:
        with self._lock:
            stale = [k for k, t in self._seen.items() if now - t > idle_seconds]
            for k in stale:
                self._sessions.pop(k, None)
                self._seen.pop(k, None)
            return len(stale)
