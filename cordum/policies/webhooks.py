"""POST /hooks/git/<repo_id>: push notifications from GitHub, GitLab or anything that signs with HMAC.

Accepted proofs (any one):
  GitHub   X-Hub-Signature-256: sha256=<hex hmac-sha256(secret, body)>
  GitLab   X-Gitlab-Token: <secret>
  generic  X-Cordum-Signature: sha256=<hex hmac-sha256(secret, body)>
A missing or wrong proof gets 401 and nothing is queued. The only csrf_exempt view of the app.
"""

import hashlib
import hmac
import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from cordum.common.crypto import constant_time_equals
from cordum.policies.models import PolicyRepository
from cordum.policies.services import repository_sync_request


def _hmac_ok(secret: str, body: bytes, header: str) -> bool:
    if not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return constant_time_equals(expected, header.strip())


def verify_signature(*, secret: str, body: bytes, headers) -> str | None:
    """The provider whose proof verified ('github', 'gitlab', 'generic'), or None."""
    if not secret:
        return None
    if headers.get("X-Hub-Signature-256") and _hmac_ok(secret, body, headers["X-Hub-Signature-256"]):
        return "github"
    if headers.get("X-Gitlab-Token") and constant_time_equals(secret, headers["X-Gitlab-Token"]):
        return "gitlab"
    if headers.get("X-Cordum-Signature") and _hmac_ok(secret, body, headers["X-Cordum-Signature"]):
        return "generic"
    return None


def _unauthorized():
    return JsonResponse({"message": "Missing or invalid webhook signature.", "extra": {}}, status=401)


@csrf_exempt
@require_POST
def git_webhook(request, repo_id: int):
    repository = PolicyRepository.objects.filter(pk=repo_id).select_related("organization").first()
    # Same answer for an unknown repository as for a bad signature: do not reveal which ids exist.
    if repository is None:
        return _unauthorized()
    provider = verify_signature(secret=repository.webhook_secret, body=request.body, headers=request.headers)
    if provider is None:
        return _unauthorized()
    if request.headers.get("X-GitHub-Event") == "ping":
        return JsonResponse({"ok": True, "queued": False, "provider": provider})
    if not repository.is_enabled:
        return JsonResponse({"ok": True, "queued": False, "message": "repository is disabled"}, status=202)
    repository_sync_request(repository=repository)
    ref = ""
    try:
        ref = json.loads(request.body or b"{}").get("ref", "")
    except (ValueError, AttributeError):
        pass
    return JsonResponse({"ok": True, "queued": True, "provider": provider, "ref": ref}, status=202)
