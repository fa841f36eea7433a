"""GET /healthz: is the control plane serving, and which dependency is down.

The database is the record: without it nothing works, so the answer is 503. Redis only carries wake-ups
and the Celery queue (evidence is staged in the database and swept back into the queue), so without it
the control plane still serves every sidecar request: 200 with status "degraded" and `redis: down`, so a
load balancer keeps the instance and an operator still sees what is wrong. Details of the failure (hosts,
ports) go to the log, not to this unauthenticated page.
"""

import logging

from django.db import connection
from django.db.utils import Error as DatabaseError
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from cordum.common.notify import redis_health

logger = logging.getLogger(__name__)


def _database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        logger.warning("health: the database is unreachable", exc_info=True)
        return False
    return True


@never_cache
@require_GET
def healthz(request):
    database = _database()
    redis_ok, detail = redis_health()
    if not redis_ok:
        logger.warning("health: Redis %s", detail)
    status = "ok" if database and redis_ok else ("degraded" if database else "down")
    body = {"status": status, "database": "ok" if database else "down", "redis": "ok" if redis_ok else "down"}
    return JsonResponse(body, status=200 if database else 503)
