"""Agent-token authentication for the evidence upload hot path.

Same tokens and checks as `cordum.accounts.authentication.TokenAuthentication`, but the token's
`last_used_at` is written at most once a minute instead of on every request: a fleet uploads many batches
per second, and a committed UPDATE per batch would double the upload's synchronous database round trips.
"""

import datetime as dt

from django.utils import timezone
from rest_framework import authentication, exceptions

from cordum.accounts.authentication import AgentPrincipal, TokenAuthentication, agent_for_token
from cordum.accounts.models import AgentToken
from cordum.accounts.services import AGENT_TOKEN_PREFIX

LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


class UploadTokenAuthentication(TokenAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if len(header) != 2 or header[0] != self.keyword or not header[1].startswith(AGENT_TOKEN_PREFIX + "_"):
            return super().authenticate(request)
        agent, token = agent_for_token(header[1])
        if agent is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked agent token.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            AgentToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return AgentPrincipal(agent), token
