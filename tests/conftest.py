"""Shared fixtures. Tests run against the real PostgreSQL and Redis the machine provides.

`--no-services` is the fast lane (`make test-fast`): it keeps only the tests that need neither (the engine, the
sidecar against real MCP servers, the CLI) and refuses nothing for the services' absence.
"""

import os

import pytest

# Fixtures that reach PostgreSQL or Redis; a test using any of them is not in the fast lane.
SERVICE_FIXTURES = frozenset({
    "db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server",
    "celery_worker", "celery_eager", "client", "admin_client", "django_user_model",
})


def pytest_addoption(parser):
    parser.addoption("--no-services", action="store_true",
                     help="the fast lane: run only the tests that need neither PostgreSQL nor Redis")


def _needs_services(item) -> bool:
    return item.get_closest_marker("django_db") is not None or bool(SERVICE_FIXTURES & set(item.fixturenames))


def pytest_configure(config):
    if config.getoption("--no-services"):
        return
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        pytest.exit(
            "The tests need PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test "
            "(`make test` does). Refusing to fall back to SQLite.",
            returncode=2,
        )
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is unreachable at {url}: {exc}".strip(), returncode=2)
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        pytest.exit("The tests need Redis: set REDIS_URL=redis://127.0.0.1:6379/0 (`make test` does).", returncode=2)
    import redis

    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=5).ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.exit(f"Redis is unreachable at {redis_url}: {exc}", returncode=2)


@pytest.fixture
def celery_eager():
    """Run tasks inline for tests that are not about the pipeline itself."""
    from cordum.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager = False


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker (thread) consuming from the real Redis broker."""
    from celery.contrib.testing.worker import start_worker

    from cordum.celery import app

    app.conf.task_always_eager = False
    with start_worker(app, perform_ping_check=False, pool="solo", loglevel="WARNING", shutdown_timeout=30) as worker:
        yield worker


def pytest_collection_modifyitems(config, items):
    """Browser tests last: Playwright's sync API keeps an event loop in the main thread for the session,
    which would break later tests that call asyncio.run()."""
    if config.getoption("--no-services"):
        deselected = [item for item in items if _needs_services(item)]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not _needs_services(item)]
    items.sort(key=lambda item: "tests/browser/" in str(item.path))
