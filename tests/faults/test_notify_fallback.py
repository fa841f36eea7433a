"""With Redis unreachable, wake-ups degrade to polling and publishing never raises (the data is committed)."""

import socket
import threading

from cordum.common import notify


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"  # nothing listens once the socket closes


def test_publish_without_redis_does_not_raise_and_still_wakes_local_waiters(settings):
    settings.REDIS_URL = _closed_port_url()
    before = notify._local_generation.get("approval:x", 0)
    notify.publish("approval:x", "decided")  # raised redis.ConnectionError before the fix
    assert notify._local_generation["approval:x"] == before + 1


def test_a_long_poll_without_redis_wakes_by_polling_its_check(settings):
    settings.REDIS_URL = _closed_port_url()
    decided = threading.Event()
    threading.Timer(0.3, decided.set).start()
    assert notify.wait_for("approval:x", 30, decided.is_set) is True


def test_health_names_redis_down(settings):
    settings.REDIS_URL = _closed_port_url()
    ok, detail = notify.redis_health()
    assert not ok and detail.startswith("unreachable")
