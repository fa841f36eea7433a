"""Heartbeats keep one status row per sidecar; the fleet view flags stale and old-version sidecars."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from cordum.accounts.choices import Role
from cordum.rollouts.models import SidecarInstance
from tests.rollouts.conftest import auth

pytestmark = pytest.mark.django_db


def _beat(client, agent, **extra):
    body = {"sidecar_id": f"sc-{agent.name}", "hostname": "laptop-1", "version": "0.1.0",
            "bundle_version": "v1.0.0@aaaaaaa", "bundle_sequence": 1, "shadow_version": None,
            "spool_depth": 3, "last_upload_at": None,
            "counters": {"allow": 10, "deny": 2, "require_approval": 1, "errors": 4}, "interval_seconds": 15}
    body.update(extra)
    return client.post("/api/v1/heartbeat", body, content_type="application/json", **auth(agent))


def test_heartbeat_stores_one_row_per_sidecar_and_updates_it(client, make_agent):
    agent = make_agent("claude-code-mo")
    assert _beat(client, agent).json() == {"ok": True}
    assert _beat(client, agent, spool_depth=0, bundle_sequence=2, bundle_version="v1.1.0@bbbbbbb").status_code == 200
    row = SidecarInstance.objects.get()
    assert (row.agent, row.spool_depth, row.bundle_sequence, row.bundle_version) == (agent, 0, 2, "v1.1.0@bbbbbbb")
    assert row.counters == {"allow": 10, "deny": 2, "require_approval": 1, "errors": 4}
    agent.refresh_from_db()
    assert agent.last_seen_at == row.last_seen_at


def test_heartbeat_needs_an_agent_token(client, author):
    response = author.post("/api/v1/heartbeat", {"sidecar_id": "x"}, content_type="application/json")
    assert response.status_code == 403
    client.logout()
    assert client.post("/api/v1/heartbeat", {"sidecar_id": "x"}, content_type="application/json").status_code in (401, 403)


def test_heartbeat_rejects_bad_input_naming_the_field(client, make_agent):
    response = _beat(client, make_agent("a1"), spool_depth=-1)
    assert response.status_code == 400
    assert "spool_depth" in response.json()["message"]


def test_sidecar_without_heartbeat_for_three_intervals_is_stale(client, make_agent, person):
    fresh, gone = make_agent("fresh"), make_agent("gone")
    _beat(client, fresh)
    _beat(client, gone, interval_seconds=15)
    SidecarInstance.objects.filter(agent=gone).update(last_seen_at=timezone.now() - timedelta(seconds=46))
    auditor = person(Role.AUDITOR)
    data = auditor.get("/api/v1/fleet").json()
    stale = {s["agent"]: s["is_stale"] for s in data["sidecars"]}
    assert stale == {"fresh": False, "gone": True}
    assert data["summary"]["stale"] == 1 and data["summary"]["live"] == 1
    page = auditor.get(reverse("rollouts:fleet")).content.decode()
    assert 'data-flag="stale"' in page and page.count('data-flag="stale"') == 1


def test_fleet_view_is_closed_to_members(person):
    member = person(Role.MEMBER)
    assert member.get(reverse("rollouts:fleet")).status_code == 403
    assert member.get("/api/v1/fleet").status_code == 403


def test_fleet_view_serves_the_htmx_fragment_for_auto_refresh(person, client, make_agent):
    _beat(client, make_agent("a1"))
    auditor = person(Role.AUDITOR)
    full = auditor.get(reverse("rollouts:fleet"))
    fragment = auditor.get(reverse("rollouts:fleet"), HTTP_HX_REQUEST="true")
    assert 'hx-trigger="every 5s"' in full.content.decode()
    assert b"<html" not in fragment.content and b"sc-a1" in fragment.content
    assert "HX-Request" in fragment["Vary"]


def test_sidecar_lagging_behind_its_assigned_version_is_flagged_old(client, person, repository, plan, fleet):
    from cordum.rollouts.models import Rollout
    from cordum.rollouts.selectors import fleet_rows, fleet_summary
    from tests.rollouts.conftest import POLICY_V1, POLICY_V2, publish_version

    v1 = publish_version(repository, POLICY_V1, "v1.0.0").manifest["version"]
    v2 = publish_version(repository, POLICY_V2, "v1.1.0").manifest["version"]
    rollout = Rollout.objects.get()
    person(Role.POLICY_AUTHOR).post(f"/api/v1/rollouts/{rollout.pk}/promote")  # payments -> v1.1.0
    _beat(client, fleet["pay1"], bundle_version=v2)
    _beat(client, fleet["pay2"], bundle_version=v1)  # has not picked up the canary bundle yet
    _beat(client, fleet["plat1"], bundle_version=v1, shadow_version=v2)
    rows = {r.sidecar.agent.name: r for r in fleet_rows(organization=fleet["pay1"].organization)}
    assert [name for name, r in rows.items() if r.is_old_version] == ["claude-pay-2"]
    assert rows["claude-pay-2"].expected_version == v2
    summary = fleet_summary(organization=fleet["pay1"].organization, rows=list(rows.values()))
    assert summary.text == f"1 of 3 sidecars enforce {v2}"
    assert summary.by_version == {v1: 2, v2: 1}
