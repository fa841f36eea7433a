"""Tool pinning in the sidecar: every `tools/list` answer of an upstream is compared with the lock in the bundle.

`ToolPins` (cordum.policy.toollock, shared with `cordum policy test`) keeps, per upstream, the tools it last listed (each digested once, when listed) and the drifts from
the lock in force; the relay asks it to screen each listing, the enforcer asks it (one dict lookup) whether a
called tool drifted. `DriftReporter` sends each new drift to the control plane (POST /api/v1/tool-drifts),
retrying with backoff until it is acknowledged; a failed report never affects enforcement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import httpx

from cordum.policy.model import LockedTool
from cordum.policy.toollock import ToolDrift
from cordum.sidecar.ids import utc_now_rfc3339

log = logging.getLogger("cordum.sidecar.pinning")

DRIFTS_PATH = "/api/v1/tool-drifts"
LISTING_META_PREFIX = "tools_listed:"  # spool meta key (+ server name): the server's last complete tools/list
MAX_QUEUED = 1000  # drift reports waiting for the control plane; the oldest go first past this
BATCH_BYTES = 1_000_000


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
        batch, size = [], 0
        for report in self.queue[:100]:  # one request stays well under the control plane's 2.5 MB body limit
            size += len(json.dumps(report))
            if batch and size > BATCH_BYTES:
                break
            batch.append(report)
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
