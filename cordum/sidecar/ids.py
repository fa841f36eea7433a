"""Time-ordered identifiers (UUIDv7, RFC 9562) and timestamps for evidence records."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


_POOL_BYTES = 4000
_pool = b""  # random bytes from os.urandom, read 4,000 at a time (one system call per 400 ids, not per id)
_pool_pos = 0


def _reset_pool() -> None:
    global _pool, _pool_pos
    _pool, _pool_pos = b"", 0


os.register_at_fork(after_in_child=_reset_pool)  # a forked child never reuses its parent's random bytes


def _uuid7_int() -> int:
    global _last_ms, _counter, _pool, _pool_pos
    with _lock:
        if _pool_pos + 10 > len(_pool):
            _pool, _pool_pos = os.urandom(_POOL_BYTES), 0
        rand = int.from_bytes(_pool[_pool_pos:_pool_pos + 10], "big")
        _pool_pos += 10
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


_second: tuple[int, str] = (-1, "")  # (Unix second, its "YYYY-MM-DDTHH:MM:SS"), swapped as one object


def utc_now_rfc3339() -> str:
    """RFC 3339 UTC with microseconds and a `Z` suffix (formats the date once per second: twice per call)."""
    global _second
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{cached[1]}.{us:06d}Z"
