"""Bearer-token authentication for sidecars (agent tokens) and people/CI (user tokens).

Tokens are looked up by sha256 digest; the plaintext is never stored. An agent request
authenticates as an `AgentPrincipal` with `request.auth` set to the `AgentToken`.
"""

import logging
from datetime import timedelta

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from cordum.accounts.models import AgentToken, UserToken
from cordum.accounts.services import AGENT_TOKEN_PREFIX, USER_TOKEN_PREFIX
from cordum.common.crypto import token_digest

LAST_USED_RESOLUTION = timedelta(minutes=1)
logger = logging.getLogger(__name__)


class AgentPrincipal:
    """Stands in for request.user when a sidecar calls: it is authenticated but is not a person."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, agent):
        self.agent = agent
        self.username = f"agent:{agent.name}"

    def __str__(self):
        return self.username


# Invalid bearer tokens are failed logins of this pseudo-user, so django-axes counts them per address (its own
# limit, below) and an admin unlocks an address as any other lockout (Access attempts, `axes_reset_ip`).
TOKEN_USERNAME = "bearer-token"
_TOKEN_FAILURES_KEY = "cordum:token-failures:{}"


def failure_limit(request, credentials) -> int:
    """AXES_FAILURE_LIMIT: tokens are not guessable, so a misconfigured fleet behind one address gets room to
    fail before it is locked out with the attacker; passwords are."""
    if (credentials or {}).get("username") == TOKEN_USERNAME:
        return settings.CORDUM_TOKEN_FAILURE_LIMIT
    return settings.CORDUM_LOGIN_FAILURE_LIMIT


def _token_lockout(request) -> None:
    """Refuse every bearer attempt from an address locked out for invalid tokens (checked only once the
    address has failed recently: one cache read per request otherwise)."""
    django_request = getattr(request, "_request", request)
    AxesProxyHandler.update_request(django_request)
    if not _failed_recently(django_request.axes_ip_address):
        return
    if not AxesProxyHandler.is_allowed(django_request, {"username": TOKEN_USERNAME}):
        minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
        raise exceptions.Throttled(
            wait=settings.AXES_COOLOFF_TIME.total_seconds(),
            detail=f"Too many invalid tokens from this address: bearer tokens are refused from it for {minutes} "
                   "minutes, or until an admin unlocks it (Access attempts).",
        )


def _failed_recently(address: str) -> bool:
    """The cache's hint that an address has failed; with the cache (Redis) down, assume so and ask the database."""
    try:
        return cache.get(_TOKEN_FAILURES_KEY.format(address)) is not None
    except Exception:  # noqa: BLE001 - any cache backend error: the database still answers
        return True


def _token_failed(request, message: str):
    django_request = getattr(request, "_request", request)
    try:
        cache.set(_TOKEN_FAILURES_KEY.format(django_request.axes_ip_address), 1,
                  timeout=int(settings.AXES_COOLOFF_TIME.total_seconds()))
    except Exception:  # noqa: BLE001 - the failure is still recorded by axes in the database
        logger.warning("token failure not cached (cache unavailable); lockouts are checked in the database")
    user_login_failed.send(sender=TokenAuthentication, credentials={"username": TOKEN_USERNAME},
                           request=django_request)
    return exceptions.AuthenticationFailed(message)


def agent_for_token(raw: str):
    """Return the active Agent for a raw token or None."""
    try:
        token = AgentToken.objects.select_related("agent", "agent__organization", "agent__team").get(
            digest=token_digest(raw), revoked_at__isnull=True
        )
    except AgentToken.DoesNotExist:
        return None, None
    if not token.agent.is_active:
        return None, None
    return token.agent, token


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0] != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        raw = header[1]
        _token_lockout(request)
        if raw.startswith(AGENT_TOKEN_PREFIX + "_"):
            agent, token = agent_for_token(raw)
            if agent is None:
                raise _token_failed(request, "Invalid or revoked agent token.")
            now = timezone.now()
            # A fleet calls many times a second: record use at most once per LAST_USED_RESOLUTION.
            if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
                AgentToken.objects.filter(pk=token.pk).update(last_used_at=now)
            # Hook-only agents (no sidecar heartbeat) are seen when they upload evidence or open approvals.
            if agent.last_seen_at is None or now - agent.last_seen_at > LAST_USED_RESOLUTION:
                type(agent).objects.filter(pk=agent.pk).update(last_seen_at=now)
            return AgentPrincipal(agent), token
        if raw.startswith(USER_TOKEN_PREFIX + "_"):
            try:
                token = UserToken.objects.select_related("user").get(digest=token_digest(raw), revoked_at__isnull=True)
            except UserToken.DoesNotExist:
                raise _token_failed(request, "Invalid or revoked API token.") from None
            if not token.user.is_active:
                raise _token_failed(request, "User inactive.")
            return token.user, token
        raise _token_failed(request, "Unknown token type.")

    def authenticate_header(self, request):
        return self.keyword


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "cordum.accounts.authentication.TokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Agent token (cdm_agent_...) or user token (cdm_user_...)"}
