"""Tool pinning in the sidecar: every `tools/list` answer of an upstream is compared with the lock in the bundle.

`ToolPins` keeps, per upstream, the tools it last listed (each digested once, when listed) and the drifts from
the lock in force; the relay asks it to screen each listing, the enforcer asks it (one dict lookup) whether a
called tool drifted. `DriftReporter` sends each new drift to the control plane (POST /api/v1/tool-drifts),
retrying with backoff until it is acknowledged; a failed report never affects enforcement.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import httpx

from cordum.policy.model import LockedTool, ToolsLock
from cordum.policy.toollock import DriftKind, ToolDrift, compare_listing, listed_tool
from cordum.sidecar.ids import utc_now_rfc3339

log = logging.getLogger("cordum.sidecar.pinning")

DRIFTS_PATH = "/api/v1/tool-drifts"
MAX_QUEUED = 1000  # drift reports waiting for the control plane; the oldest go first past this


class ToolPins:
    """What each upstream listed, compared with the lock in force."""

    def __init__(self) -> None:
        self._lock: ToolsLock | None = None
        self._pinned: dict[str, dict[str, LockedTool]] = {}  # server -> pinned tools (servers the lock names)
        self._seen: dict[str, dict[str, LockedTool]] = {}  # server -> tools as last listed
        self._complete: dict[str, bool] = {}  # server -> the last listing was the whole list
        self._drift: dict[tuple[str, str], ToolDrift] = {}
        self._reported: set[tuple] = set()

    @property
    def active(self) -> bool:
        return bool(self._pinned)

    def set_lock(self, lock: ToolsLock | None) -> list[ToolDrift]:
        """Put a (new) lock in force; returns the drifts not reported before, found in what was already listed."""
        if lock == self._lock:  # a tool's digest covers its schema, so equal locks pin the same tools
            return []
        self._lock = lock
        self._pinned = {name: {t.name: t for t in tools} for name, tools in (lock.servers if lock else ())}
        self._drift = {}
        fresh: list[ToolDrift] = []
        for server, tools in self._seen.items():
            fresh.extend(self._compare(server, list(tools.values()), complete=self._complete.get(server, False)))
        return fresh

    def observe(self, server: str, tools: list[Any], *, complete: bool) -> list[ToolDrift]:
        """Record one listing (a page, unless `complete`); returns the drifts not reported before."""
        listed = [t for t in (listed_tool(x) for x in tools) if t is not None]
        if complete:
            self._seen[server] = {t.name: t for t in listed}
        else:
            self._seen.setdefault(server, {}).update((t.name, t) for t in listed)
        self._complete[server] = complete
        if server not in self._pinned:
            return []
        if complete:
            for key in [k for k in self._drift if k[0] == server]:
                del self._drift[key]
        return self._compare(server, listed, complete=complete)

    def _compare(self, server: str, listed: list[LockedTool], *, complete: bool) -> list[ToolDrift]:
        pinned = self._pinned.get(server)
        if pinned is None:
            return []
        fresh = []
        for drift in compare_listing(server, pinned, listed, complete=complete):
            self._drift[(server, drift.tool)] = drift
            key = (server, drift.tool, drift.kind, drift.locked.digest if drift.locked else None,
                   drift.seen.digest if drift.seen else None)
            if key not in self._reported:
                self._reported.add(key)
                fresh.append(drift)
        return fresh

    def drift(self, server: str, tool: str) -> ToolDrift | None:
        """The drift of a called tool, or None. A tool of a pinned server that the lock does not name is new even
        if the server never listed it (the agent cannot bypass pinning by calling a name it guessed)."""
        pinned = self._pinned.get(server)
        if pinned is None:
            return None
        found = self._drift.get((server, tool))
        if found is not None:
            return found
        if tool not in pinned:
            return ToolDrift(server, tool, DriftKind.NEW, None, self._seen.get(server, {}).get(tool))
        return None

    def hidden(self, server: str, tools: list[Any]) -> list[Any] | None:
        """`tools` without the new and changed ones (on_tool_drift: deny), or None when nothing is taken out."""
        if server not in self._pinned:
            return None
        keep = [t for t in tools if not (isinstance(t, dict) and self.drift(server, str(t.get("name"))) is not None)]
        return keep if len(keep) != len(tools) else None


def drift_report(drift: ToolDrift, *, action: str, policy_version: str | None) -> dict[str, Any]:
    """One drift as the control plane stores it: what was pinned and what was listed, text included."""
    def side(tool: LockedTool | None) -> dict[str, Any] | None:
        if tool is None:
            return None
        return {"digest": tool.digest, "description": tool.description, "input_schema": tool.input_schema}

    return {"server": drift.server, "tool": drift.tool, "kind": drift.kind, "action": action,
            "locked": side(drift.locked), "seen": side(drift.seen), "policy_version": policy_version,
            "observed_at": utc_now_rfc3339()}


class DriftReporter:
    """Queues drift reports and posts them to the control plane until acknowledged."""

    def __init__(self, client: httpx.AsyncClient, *, sidecar_id: str, max_backoff: float = 60.0):
        self.client = client
        self.sidecar_id = sidecar_id
        self.max_backoff = max_backoff
        self.queue: list[dict[str, Any]] = []
        self.sent = 0
        self.last_error: str | None = None
        self._wake = asyncio.Event()

    def submit(self, reports: list[dict[str, Any]]) -> None:
        if not reports:
            return
        self.queue.extend(reports)
        del self.queue[:-MAX_QUEUED]
        self._wake.set()

    async def flush_once(self) -> bool:
        """Post what is queued; True when acknowledged (or nothing was queued)."""
        if not self.queue:
            return True
        batch = list(self.queue[:100])
        try:
            resp = await self.client.post(DRIFTS_PATH, json={"sidecar_id": self.sidecar_id, "drifts": batch},
                                          timeout=10.0)
        except httpx.HTTPError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False
        if resp.status_code == 400:  # refused as malformed: retrying cannot help; say so and drop it
            log.error("control plane refused tool drift reports", extra={"error": resp.text[:300]})
            del self.queue[:len(batch)]
            return True
        if resp.status_code not in (200, 201, 202):
            self.last_error = f"HTTP {resp.status_code}"
            return False
        del self.queue[:len(batch)]
        self.sent += len(batch)
        self.last_error = None
        return True

    async def run(self) -> None:
        backoff = 0.5
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                if await self.flush_once():
                    backoff = 0.5
                    continue
                delay = min(self.max_backoff, backoff) * (0.5 + random.random())
                log.warning("tool drift report failed; will retry",
                            extra={"error": self.last_error, "retry_in_s": round(delay, 2)})
                backoff = min(self.max_backoff, backoff * 2)
                await asyncio.sleep(delay)
