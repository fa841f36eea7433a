"""Ships spooled evidence to the control plane: POST /api/v1/decisions in batches.

Only ids the server acknowledges (`202 {"accepted": [...]}`) are deleted from the spool; everything else
goes back to the queue and is retried with exponential backoff and jitter. With no control plane
(offline mode) the uploader is simply not started and records stay in the spool.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import defaultdict

import httpx
import orjson

from cordum.sidecar.spool import Spool

log = logging.getLogger("cordum.sidecar.uploader")

DECISIONS_PATH = "/api/v1/decisions"
_BAD_INDEX = re.compile(r"records\[(\d+)\]")


class UploadError(Exception):
    pass


class Uploader:
    def __init__(
        self,
        spool: Spool,
        client: httpx.AsyncClient,
        *,
        batch_size: int = 500,
        interval: float = 1.0,
        linger: float = 0.05,
        max_backoff: float = 60.0,
    ):
        self.spool = spool
        self.client = client
        self.batch_size = batch_size
        self.interval = interval
        self.linger = linger
        self.max_backoff = max_backoff
        self.last_upload_at: float | None = None  # wall clock of the last acknowledged batch
        self.last_error: str | None = None
        self.uploaded = 0
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """A record was spooled: upload soon (after a short linger that lets a batch form)."""
        self._wake.set()

    async def flush_once(self) -> int:
        """Upload one batch. Returns how many records were acknowledged; raises UploadError on failure."""
        batch = self.spool.claim(self.batch_size)
        if not batch:
            return 0
        seqs_by_id: dict[str, list[int]] = defaultdict(list)
        for seq, rid, _ in batch:
            seqs_by_id[rid].append(seq)
        body = b'{"records":[' + b",".join(b for _, _, b in batch) + b"]}"
        acked: list[int] = []
        bad_seqs: list[int] = []
        try:
            resp = await self.client.post(
                DECISIONS_PATH, content=body, headers={"Content-Type": "application/json"}
            )
            if resp.status_code == 400:
                # A record the server refuses would block the queue forever: park it (kept, never deleted).
                message = _message(resp)
                bad = {int(m) for m in _BAD_INDEX.findall(message)}
                bad_seqs = [batch[i][0] for i in bad if i < len(batch)]
                self.spool.reject(bad_seqs)
                log.error("control plane rejected records", extra={"error": message, "rejected": len(bad_seqs)})
                if not bad_seqs:
                    raise UploadError(f"400 from {DECISIONS_PATH}: {message}")
                return 0
            if resp.status_code not in (200, 201, 202):
                raise UploadError(f"{resp.status_code} from {DECISIONS_PATH}: {_message(resp)}")
            accepted = orjson.loads(resp.content).get("accepted") or []
            for rid in accepted:
                acked.extend(seqs_by_id.pop(rid, ()))
            self.spool.ack(acked)
        except (httpx.HTTPError, ValueError, OSError) as exc:
            raise UploadError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            done = set(acked) | set(bad_seqs)
            self.spool.release([s for s, _, _ in batch if s not in done])
        self.uploaded += len(acked)
        self.last_upload_at = time.time()
        self.spool.set_meta("last_upload_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.last_upload_at)))
        self.last_error = None
        return len(acked)

    async def drain(self, *, deadline: float | None = None) -> bool:
        """Upload until the spool is empty (True) or an upload fails / the deadline passes (False)."""
        while True:
            if deadline is not None and time.monotonic() > deadline:
                return False
            try:
                n = await self.flush_once()
            except UploadError as exc:
                self.last_error = str(exc)
                log.warning("evidence upload failed", extra={"error": str(exc)})
                return False
            if n == 0:
                return self.spool.depth() == 0

    async def run(self) -> None:
        """Upload forever: wake on new records or every `interval`; back off (with jitter) on errors."""
        backoff = 0.5
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
                await asyncio.sleep(self.linger)
            except TimeoutError:
                pass
            self._wake.clear()
            while True:
                try:
                    n = await self.flush_once()
                except UploadError as exc:
                    self.last_error = str(exc)
                    delay = min(self.max_backoff, backoff) * (0.5 + random.random())
                    log.warning("evidence upload failed; will retry", extra={"error": str(exc), "retry_in_s": round(delay, 2)})
                    backoff = min(self.max_backoff, backoff * 2)
                    await asyncio.sleep(delay)
                    continue
                backoff = 0.5
                if n < self.batch_size:
                    break


def _message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        return str(data.get("message") or data)
    except ValueError:
        return resp.text[:300]
