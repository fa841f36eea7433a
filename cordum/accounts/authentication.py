"""Bearer-token authentication for sidecars (agent tokens) and people/CI (user tokens).

Tokens are looked up by sha256 digest; the plaintext is never stored. An agent request
authenticates as an `AgentPrincipal` with `request.auth` set to the `AgentToken`.
"""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from cordum.accounts.models import AgentToken, UserToken
from cordum.accounts.services import AGENT_TOKEN_PREFIX, USER_TOKEN_PREFIX
from cordum.common.crypto import token_digest

LAST_USED_RESOLUTION = timedelta(minutes=1)


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


def agent_for_token(raw: str):
    """Return the active Agent for a raw token or None (shared by DRF auth and plain Django views)."""
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
        if raw.startswith(AGENT_TOKEN_PREFIX + "_"):
            agent, token = agent_for_token(raw)
            if agent is None:
                raise exceptions.AuthenticationFailed("Invalid or revoked agent token.")
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
                raise exceptions.AuthenticationFailed("Invalid or revoked API token.") from None
            if not token.user.is_active:
                raise exceptions.AuthenticationFailed("User inactive.")
            return token.user, token
        raise exceptions.AuthenticationFailed("Unknown token type.")

    def authenticate_header(self, request):
        return self.keyword


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "cordum.accounts.authentication.TokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Agent token (cdm_agent_...) or user token (cdm_user_...)"}
