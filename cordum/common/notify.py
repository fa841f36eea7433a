"""Wake waiters across processes: Redis pub/sub when REDIS_URL is set, in-process otherwise.

Long-polls (bundles, approvals) call `wait_for(channel, timeout, check)`: it returns as soon as
`check()` is truthy, re-checking only when something is published on the channel (no busy loop).
"""

import threading
import time
from collections.abc import Callable

from django.conf import settings

_local_condition = threading.Condition()
_local_generation: dict[str, int] = {}


def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


def publish(channel: str, message: str = "1") -> None:
    if settings.REDIS_URL:
        _redis().publish(f"cordum:{channel}", message)
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
        pubsub = _redis().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(f"cordum:{channel}")
        try:
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
            pubsub.close()
    with _local_condition:
        while not result:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            seen = _local_generation.get(channel, 0)
            _local_condition.wait_for(lambda seen=seen: _local_generation.get(channel, 0) != seen, remaining)
            result = check()
    return result
