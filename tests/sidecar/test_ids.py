"""Evidence ids and timestamps: UUIDv7s are unique, time-ordered and valid; timestamps are RFC 3339 UTC."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime

from cordum.sidecar.ids import utc_now_rfc3339, uuid7_str, uuid7_time_ms


def test_uuid7s_are_unique_sorted_and_valid_across_many_refills_of_the_random_pool():
    ids = [uuid7_str() for _ in range(20_000)]  # 50 refills of the 4,000-byte pool
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    parsed = uuid.UUID(ids[-1])
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122) and str(parsed) == ids[-1]
    assert abs(uuid7_time_ms(ids[-1]) - datetime.now(UTC).timestamp() * 1000) < 60_000


def test_a_forked_child_draws_different_random_bits_than_its_parent():
    uuid7_str()  # the parent's pool is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, uuid7_str().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    parent = uuid7_str()
    assert child[-12:] != parent[-12:]  # the random tails differ


def test_timestamps_are_rfc3339_utc_with_microseconds_and_match_the_clock():
    stamp = utc_now_rfc3339()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 60
    assert utc_now_rfc3339() >= stamp  # ordered within the cached second and across it
