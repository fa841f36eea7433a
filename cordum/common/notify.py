"""Wake waiters across processes: Redis pub/sub when REDIS_URL is set, in-process otherwise.

Long-polls (bundles, approvals) call `wait_for(channel, timeout, check)`: it returns as soon as
`check()` is truthy, re-checking only when something is published on the channel (no busy loop).

Redis is a wake-up channel, never the record: every caller has committed its data before it publishes.
So a Redis outage degrades, it does not fail: `publish` logs and returns (the request that saved the data
still answers 2xx), and `wait_for` falls back to re-running `check()` (a database read) every
`POLL_FALLBACK_SECONDS` until Redis answers again. `redis_health()` reports the outage for /healthz.
"""

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings

logger = logging.getLogger(__name__)

POLL_FALLBACK_SECONDS = 0.5  # how often a long-poll re-reads the database while Redis is unreachable
_SOCKET_TIMEOUT = 2.0  # a hung Redis must not hang the request that has already saved its data

_local_condition = threading.Condition()
_local_generation: dict[str, int] = {}


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=_SOCKET_TIMEOUT,
                                socket_timeout=_SOCKET_TIMEOUT)


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


def redis_health() -> tuple[bool, str]:
    """(ok, detail): whether the wake-up channel answers. Without REDIS_URL there is none to lose."""
    if not settings.REDIS_URL:
        return True, "not configured (in-process wake-ups)"
    try:
        _redis().ping()
    except _redis_errors() as exc:
        return False, f"unreachable: {exc}"
    return True, "ok"


def publish(channel: str, message: str = "1") -> None:
    """Wake the channel's waiters; a Redis outage is logged, never raised (the data is already committed)."""
    if settings.REDIS_URL:
        try:
            _redis().publish(f"cordum:{channel}", message)
        except _redis_errors() as exc:
            logger.warning("Redis unreachable: could not publish on %s (waiters fall back to polling): %s",
                           channel, exc)
    with _local_condition:
        _local_generation[channel] = _local_generation.get(channel, 0) + 1
        _local_condition.notify_all()


def wait_for(channel: str, timeout: float, check: Callable[[], object]):
    """Return check()'s first truthy value, or its last value once `timeout` seconds pass."""
    deadline = time.monotonic() + max(0.0, timeout)
    result = check()
    if result or timeout <= 0:
        return result
    if settings.REDIS_URL:
        try:
            return _wait_redis(channel, deadline, check)
        except _redis_errors() as exc:
            logger.warning("Redis unreachable: long-poll on %s falls back to polling the database: %s", channel, exc)
            return _wait_polling(deadline, check)
    with _local_condition:
        while not result:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            seen = _local_generation.get(channel, 0)
            _local_condition.wait_for(lambda seen=seen: _local_generation.get(channel, 0) != seen, remaining)
            result = check()
    return result


def _wait_redis(channel: str, deadline: float, check: Callable[[], object]):
    pubsub = _redis().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(f"cordum:{channel}")
        result = check()  # re-check after subscribing: nothing published in between is lost
        while not result:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            message = pubsub.get_message(timeout=min(remaining, 5.0))
            if message is not None or remaining <= 5.0:
                result = check()
        return result
    finally:
        try:
            pubsub.close()
        except _redis_errors():
            pass


def _wait_polling(deadline: float, check: Callable[[], object]):
    result = check()
    while not result:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(POLL_FALLBACK_SECONDS, remaining))
        result = check()
    return result
