"""POST /api/v1/heartbeat every 15 s: who this sidecar is, which bundle it enforces, how much evidence waits.

A failed heartbeat is logged and otherwise ignored: it never affects enforcement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("cordum.sidecar.heartbeat")


class Heartbeat:
    def __init__(self, client: httpx.AsyncClient, build: Callable[[], dict[str, Any]], *, interval: float = 15.0):
        self.client = client
        self.build = build
        self.interval = interval
        self.sent = 0
        self.last_error: str | None = None

    async def beat(self) -> bool:
        body = dict(self.build(), interval_seconds=int(self.interval))
        try:
            resp = await self.client.post("/api/v1/heartbeat", json=body, timeout=10.0)
        except httpx.HTTPError as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("heartbeat failed", extra={"error": self.last_error})
            return False
        if resp.status_code != 200:
            self.last_error = f"HTTP {resp.status_code}"
            log.warning("heartbeat refused", extra={"status": resp.status_code})
            return False
        self.sent += 1
        self.last_error = None
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception:  # never fatal
                log.exception("heartbeat crashed; continuing")
            await asyncio.sleep(self.interval)
