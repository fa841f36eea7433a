"""Fixtures for the evidence pipeline tests: an org with two teams, agents with real tokens, records."""

import datetime as dt
import uuid

import pytest
from rest_framework.test import APIClient

from cordum.accounts.choices import Role
from tests.factories import MembershipFactory, OrganizationFactory, TeamFactory, UserFactory, agent_with_token


def make_decision(*, n: int = 0, decision: str = "allow", session_id: str = "sess_1", target: str | None = None,
                  when: dt.datetime | None = None, **extra) -> dict:
    when = when or dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC) + dt.timedelta(seconds=n)
    record = {
        "record_type": "decision", "decision_id": str(uuid.uuid4()), "agent": "spoofed-agent",
        "session_id": session_id, "team": "spoofed-team", "environment": "dev", "action": "git.push",
        "target": target or f"origin/feature-{n}", "server": "git", "tool": "git_push",
        "args_digest": "sha256:" + "ab" * 32, "args": {"remote": "origin", "branch": f"feature-{n}"},
        "topic": "job.mcp-bridge.git.push", "risk_tags": ["deploy"], "decision": decision,
        "rule": "approve-git-push" if decision != "allow" else None, "reason": "test",
        "policy_version": "v1.0.0@abc1234", "mode": "enforce", "shadow": [], "reviewer": None, "outcome": None,
        "timestamp": when.isoformat().replace("+00:00", "Z"), "latency_us": 41, "sidecar_id": "sc-1",
    }
    record.update(extra)
    return record


def make_outcome(decision: dict, outcome: str = "executed", **extra) -> dict:
    return {"record_type": "outcome", "decision_id": decision["decision_id"], "outcome": outcome, "reviewer": None,
            "comment": "", "error": "", "timestamp": decision["timestamp"], "duration_ms": 12, **extra}


@pytest.fixture
def org_setup(db):
    org = OrganizationFactory(slug="acme-test")
    payments = TeamFactory(organization=org, slug="payments", name="Payments")
    web = TeamFactory(organization=org, slug="web", name="Web")
    pay_agent, pay_issued = agent_with_token(organization=org, name="claude-code-pay", team=payments)
    web_agent, web_issued = agent_with_token(organization=org, name="cursor-web", team=web)

    def member(role, teams=()):
        m = MembershipFactory(organization=org, user=UserFactory(), role=role)
        m.teams.set(teams)
        return m

    return {
        "org": org, "payments": payments, "web": web,
        "pay_agent": pay_agent, "pay_token": pay_issued.plaintext,
        "web_agent": web_agent, "web_token": web_issued.plaintext,
        "auditor": member(Role.AUDITOR), "member": member(Role.MEMBER, [payments]), "admin": member(Role.ADMIN),
    }


def agent_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client
