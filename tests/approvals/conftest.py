"""Fixtures for approvals: an org with a reviewer, an agent owned by a member, its sidecar's API client."""

import hashlib
import json
import uuid

import pytest
from rest_framework.test import APIClient

from cordum.accounts.choices import Role
from cordum.approvals.models import ApprovalRequest
from tests.approvals.e2e import fs_server_bin, world  # noqa: F401  (the end-to-end fixtures, shared)
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, UserFactory, agent_with_token

DIFF = """--- a/src/app.py
+++ b/src/app.py
@@ -1,3 +1,3 @@
 import os
-DEBUG = True
+DEBUG = False
 print("hi")
"""


def digest(arguments: dict) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()


def open_payload(**overrides) -> dict:
    arguments = overrides.pop("arguments", {"path": "src/app.py", "content": "DEBUG = False\n"})
    payload = {
        "decision_id": str(uuid.uuid4()), "session_id": "sess_01TEST", "server": "filesystem", "tool": "write_file",
        "action": "file.write", "target": "src/app.py", "topic": "job.mcp-bridge.file.write", "risk_tags": ["write"],
        "rule": "approve-writes", "reason": "File writes need review", "args_digest": digest(arguments),
        "args": arguments, "diff": DIFF, "policy_version": "v1.0.0@abc1234", "timeout_seconds": 900,
        "on_timeout": "deny", "reviewers": ["role:reviewer"], "allow_self_approval": False,
    }
    payload.update(overrides)
    return payload


def api_client(token: str | None = None, user=None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def setup(db):
    org = OrganizationFactory(slug="acme-approvals")
    payments = TeamFactory(organization=org, slug="payments", name="Payments")

    def member(role, teams=(), **user_kwargs):
        m = MembershipFactory(organization=org, user=UserFactory(**user_kwargs), role=role)
        m.teams.set(teams)
        return m

    owner = member(Role.REVIEWER, [payments], username="mo", email="mo@example.com")
    alice = member(Role.REVIEWER, [payments], username="alice", email="alice@example.com")
    bob = member(Role.REVIEWER, [], username="bob", email="bob@example.com")
    agent, issued = agent_with_token(organization=org, name="claude-code-mo", team=payments, owner=owner.user)

    def open_request(**overrides) -> ApprovalRequest:
        response = api_client(issued.plaintext).post("/api/v1/approvals", open_payload(**overrides), format="json")
        assert response.status_code == 201, response.content
        return ApprovalRequest.objects.get(pk=response.json()["id"])

    return {
        "org": org, "payments": payments, "owner": owner, "alice": alice, "bob": bob, "agent": agent,
        "token": issued.plaintext, "sidecar": api_client(issued.plaintext), "open": open_request, "member": member,
    }
