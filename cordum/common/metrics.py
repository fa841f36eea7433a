"""GET /metrics: the control plane's Prometheus metrics, read from the database at scrape time.

Reading the database (not per-process counters) makes every scrape the same whichever web worker answers it,
and needs no shared multiprocess directory. Each app registers the function that yields its metric families
(`register`, from its AppConfig.ready), so this module knows none of them.

Access is closed unless configured: a scraper sends `Authorization: Bearer <CORDUM_METRICS_TOKEN>` or connects
from an address in CORDUM_METRICS_ALLOW_NETWORKS (the direct peer address, REMOTE_ADDR: forwarded headers are
not trusted here).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

log = logging.getLogger(__name__)

_collectors: list[Callable[[], Iterable]] = []


def register(collect: Callable[[], Iterable]) -> None:
    """Add a function that yields prometheus_client metric families (once per process; repeats are ignored)."""
    if collect not in _collectors:
        _collectors.append(collect)


def _refusal(request: HttpRequest) -> HttpResponse | None:
    token, networks = settings.CORDUM_METRICS_TOKEN, settings.CORDUM_METRICS_ALLOW_NETWORKS
    if not token and not networks:
        return JsonResponse({"message": "Metrics are off: set CORDUM_METRICS_TOKEN (the scraper sends it as a "
                                        "bearer token) or CORDUM_METRICS_ALLOW_NETWORKS (the scraper's networks)."},
                            status=403)
    if networks:
        try:
            address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
        except ValueError:
            address = None
        if address is not None and any(address in ipaddress.ip_network(n) for n in networks):
            return None
    if token:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode()):
            return None
        response = JsonResponse({"message": "A valid bearer token is required (Authorization: Bearer "
                                            "<CORDUM_METRICS_TOKEN>)."}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="cordum-metrics"'
        return response
    return JsonResponse({"message": "This address is not in CORDUM_METRICS_ALLOW_NETWORKS."}, status=403)


class _Registered:
    def collect(self):
        for collect in _collectors:
            try:
                families = list(collect())
            except Exception:  # one app's failing query leaves the others' metrics scrapeable
                log.exception("metrics: a collector failed")
                continue
            yield from families


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Registered())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
