"""Time-ordered identifiers (UUIDv7, RFC 9562) and timestamps for evidence records."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _uuid7_int() -> int:
    global _last_ms, _counter
    rand = int.from_bytes(os.urandom(10), "big")
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = (rand >> 64) & 0x3FF  # random start, with headroom for increments
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted within one millisecond: borrow the next one
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
    return (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | (rand & 0x3FFFFFFFFFFFFFFF)


def uuid7() -> uuid.UUID:
    """A UUIDv7: 48-bit Unix milliseconds, then a 12-bit counter (monotonic within a millisecond), then random.

    Ids from one process sort in creation order, which keeps the spool and the audit trail time-ordered.
    """
    return uuid.UUID(int=_uuid7_int())


def uuid7_str() -> str:
    """str(uuid7()) without building a UUID object (this runs once per tool call)."""
    h = f"{_uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_time_ms(value: uuid.UUID | str) -> int:
    """The millisecond timestamp embedded in a UUIDv7."""
    if isinstance(value, str):
        value = uuid.UUID(value)
    return value.int >> 80


def utc_now_rfc3339() -> str:
    """RFC 3339 UTC with microseconds and a `Z` suffix."""
    ns = time.time_ns()
    sec, us = divmod(ns // 1000, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{us:06d}Z"
