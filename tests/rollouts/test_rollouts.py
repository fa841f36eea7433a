"""Staged rollouts: which bundle each agent gets per stage, promote, rollback, guardrails, audit."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from cordum.accounts.models import AdminAuditLog
from cordum.rollouts import services
from cordum.rollouts.assignment import agent_bucket
from cordum.rollouts.models import Rollout
from tests.rollouts.conftest import POLICY_V1, POLICY_V2, POLICY_V3, bundle_for, publish_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def v1(repository):
    return publish_version(repository, POLICY_V1, "v1.0.0")


@pytest.fixture
def rollout(v1, plan, fleet, repository):
    publish_version(repository, POLICY_V2, "v1.1.0")
    return Rollout.objects.get()


def _versions(client, fleet):
    return {key: bundle_for(client, agent) for key, agent in fleet.items()}


def test_first_version_of_an_organisation_goes_to_everyone_without_a_rollout(client, v1, plan, fleet):
    assert not Rollout.objects.exists()
    assert {v[0] for v in _versions(client, fleet).values()} == {v1.manifest["version"]}


def test_without_a_plan_a_new_version_goes_to_everyone_at_once(client, v1, fleet, repository):
    v2 = publish_version(repository, POLICY_V2, "v1.1.0")
    assert not Rollout.objects.exists()
    assert {v[0] for v in _versions(client, fleet).values()} == {v2.manifest["version"]}


def test_a_new_live_version_starts_a_rollout_in_shadow_returning_both_bundles(client, v1, rollout, fleet):
    assert (rollout.state, rollout.stage_index) == ("running", 0)
    old, new = rollout.from_version.version, rollout.to_version.version
    for version, _seq, rollback, shadow in _versions(client, fleet).values():
        assert (version, rollback, shadow) == (old, False, new)


def test_canary_stage_puts_exactly_the_canary_team_on_the_new_version(client, author, rollout, fleet):
    response = author.post(f"/api/v1/rollouts/{rollout.pk}/promote", {}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["stage"]["name"] == "canary"
    old, new = rollout.from_version.version, rollout.to_version.version
    got = _versions(client, fleet)
    assert {k for k, v in got.items() if v[0] == new} == {"pay1", "pay2"}
    assert all(v[3] is None for k, v in got.items() if k.startswith("pay"))  # canaries enforce, no shadow
    assert all(v[0] == old and v[3] == new for k, v in got.items() if not k.startswith("pay"))  # others shadow


def test_percentage_canary_is_deterministic_by_agent_hash(client, v1, repository, make_agent):
    from cordum.rollouts.services import rollout_plan_set

    rollout_plan_set(repository=repository, actor=None, auto_start=True, stages=[
        {"name": "half", "kind": "canary", "percent": 50, "min_soak_seconds": 0},
        {"name": "all", "kind": "all", "min_soak_seconds": 0}])
    agents = [make_agent(f"agent-{i:02d}") for i in range(16)]
    v2 = publish_version(repository, POLICY_V2, "v1.1.0")
    expected = {a.name for a in agents if agent_bucket(a.pk) < 50}
    assert 0 < len(expected) < len(agents)
    for _ in range(2):  # same answer every time: nobody flips back and forth
        on_new = {a.name for a in agents if bundle_for(client, a)[0] == v2.manifest["version"]}
        assert on_new == expected


def test_promote_through_every_stage_moves_everyone_and_completes(client, author, rollout, fleet):
    for _ in range(2):
        assert author.post(f"/api/v1/rollouts/{rollout.pk}/promote").status_code == 200
    rollout.refresh_from_db()
    assert rollout.state == "completed"
    versions = _versions(client, fleet)
    assert {v[0] for v in versions.values()} == {rollout.to_version.version}
    assert all(v[3] is None for v in versions.values())


def test_rollback_returns_everyone_to_the_old_version_with_the_rollback_flag(client, author, rollout, fleet):
    author.post(f"/api/v1/rollouts/{rollout.pk}/promote")
    to_sequence = rollout.to_bundle.sequence
    response = author.post(f"/api/v1/rollouts/{rollout.pk}/rollback", {"reason": "too strict"},
                           content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "rolled_back"
    for version, sequence, rollback, shadow in _versions(client, fleet).values():
        assert (version, rollback, shadow) == (rollout.from_version.version, True, None)
        assert sequence > to_sequence  # a newer sequence: every sidecar takes it, canaries included


def test_a_completed_rollout_can_be_rolled_back_while_the_fleet_still_enforces_its_version(
        client, author, rollout, fleet):
    for _ in range(2):
        author.post(f"/api/v1/rollouts/{rollout.pk}/promote")
    page = author.get(f"/rollouts/{rollout.pk}/")
    assert b'data-testid="rollback"' in page.content and b"revert it there too" in page.content

    response = author.post(f"/api/v1/rollouts/{rollout.pk}/rollback", {"reason": "regression at 100%"},
                           content_type="application/json")

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "rolled_back"
    for version, _sequence, rollback, shadow in _versions(client, fleet).values():
        assert (version, rollback, shadow) == (rollout.from_version.version, True, None)
    assert b'data-testid="rollback"' not in author.get(f"/rollouts/{rollout.pk}/").content


def test_a_completed_rollout_the_fleet_moved_past_cannot_be_rolled_back(author, rollout, fleet, repository):
    for _ in range(2):
        author.post(f"/api/v1/rollouts/{rollout.pk}/promote")
    newer = publish_version(repository, POLICY_V3, "v1.2.0")  # starts the next rollout
    for _ in range(2):
        author.post(f"/api/v1/rollouts/{Rollout.objects.get(to_bundle=newer).pk}/promote")

    response = author.post(f"/api/v1/rollouts/{rollout.pk}/rollback", content_type="application/json")

    assert response.status_code == 409
    assert "moved on to v1.2.0@" in response.json()["message"]
    assert b'data-testid="rollback"' not in author.get(f"/rollouts/{rollout.pk}/").content


def test_promote_before_the_soak_time_needs_force(author, v1, repository, fleet):
    from cordum.rollouts.services import rollout_plan_set

    rollout_plan_set(repository=repository, actor=None, stages=[
        {"name": "shadow", "kind": "shadow", "min_soak_seconds": 3600}, {"name": "all", "kind": "all"}])
    publish_version(repository, POLICY_V2, "v1.1.0")
    rollout = Rollout.objects.get()
    response = author.post(f"/api/v1/rollouts/{rollout.pk}/promote")
    assert response.status_code == 409 and "soak" in response.json()["message"]
    assert author.post(f"/api/v1/rollouts/{rollout.pk}/promote", {"force": True},
                       content_type="application/json").json()["state"] == "completed"


def test_manual_start_plan_keeps_everyone_on_the_old_version_until_started(client, author, v1, repository, fleet):
    from cordum.rollouts.services import rollout_plan_set

    rollout_plan_set(repository=repository, actor=None, auto_start=False, stages=[{"name": "all", "kind": "all"}])
    publish_version(repository, POLICY_V2, "v1.1.0")
    rollout = Rollout.objects.get()
    assert rollout.state == "pending"
    assert {v[0] for v in _versions(client, fleet).values()} == {v1.manifest["version"]}
    assert author.post(f"/api/v1/rollouts/{rollout.pk}/start").json()["state"] == "completed"
    assert {v[0] for v in _versions(client, fleet).values()} == {rollout.to_version.version}


def test_pause_and_resume(author, rollout):
    assert author.post(f"/api/v1/rollouts/{rollout.pk}/pause").json()["state"] == "paused"
    assert author.post(f"/api/v1/rollouts/{rollout.pk}/pause").status_code == 409
    assert author.post(f"/api/v1/rollouts/{rollout.pk}/resume").json()["state"] == "running"


def test_a_newer_version_supersedes_a_running_rollout_without_sequence_downgrades(
        client, author, rollout, fleet, repository):
    author.post(f"/api/v1/rollouts/{rollout.pk}/promote")  # payments now enforce v1.1.0
    held = {k: v[1] for k, v in _versions(client, fleet).items()}
    v3 = publish_version(repository, POLICY_V3, "v1.2.0")
    rollout.refresh_from_db()
    assert rollout.state == "superseded"
    newer = Rollout.objects.exclude(pk=rollout.pk).get()
    assert (newer.state, newer.to_version.version) == ("running", v3.version.version)
    for key, (version, sequence, _rollback, shadow) in _versions(client, fleet).items():
        assert sequence > held[key]  # every sidecar accepts what it is served now
        assert (version, shadow) == (rollout.from_version.version, v3.version.version)


def test_every_rollout_action_is_in_the_admin_audit_log(author, rollout):
    author.post(f"/api/v1/rollouts/{rollout.pk}/pause")
    author.post(f"/api/v1/rollouts/{rollout.pk}/resume")
    author.post(f"/api/v1/rollouts/{rollout.pk}/promote")
    author.post(f"/api/v1/rollouts/{rollout.pk}/rollback")
    entries = AdminAuditLog.objects.filter(object_type="Rollout", object_id=str(rollout.pk)).order_by("id")
    actions = [e.after["action"] for e in entries]
    assert actions == ["create", "start", "pause", "resume", "promote", "rollback"]
    assert {e.actor_name for e in entries[2:]} == {author.membership.user.email}


# --- guardrails -----------------------------------------------------------------------------------
def _evidence(org, agent, *, version: str, decisions: list[str], shadow: tuple[str, list[str]] | None = None):
    from cordum.decisions.services import evidence_append

    now = timezone.now()
    records = []
    for i, decision in enumerate(decisions):
        record = {"record_type": "decision", "decision_id": str(uuid.uuid4()), "agent": agent.name,
                  "session_id": "sess_1", "server": "git", "tool": "git_push", "decision": decision,
                  "policy_version": version, "mode": "enforce", "timestamp": now.isoformat().replace("+00:00", "Z"),
                  "shadow": []}
        if shadow is not None:
            record["shadow"] = [{"rule": None, "decision": shadow[1][i], "policy_version": shadow[0]}]
        records.append(record)
    evidence_append(organization=org, records=records, agent=agent)


def test_guardrail_breach_in_shadow_halts_the_rollout_by_itself(org, rollout, fleet):
    old, new = rollout.from_version.version, rollout.to_version.version
    # 20 calls allowed by the live version; the candidate would gate 4 of them (20%) > 5%
    _evidence(org, fleet["plat1"], version=old, decisions=["allow"] * 20,
              shadow=(new, ["require_approval"] * 4 + ["allow"] * 16))
    result = services.rollouts_check()
    rollout.refresh_from_db()
    assert result["halted"] == 1
    assert rollout.state == "halted"
    assert rollout.guardrail["source"] == "shadow" and rollout.guardrail["observed_rate"] == pytest.approx(0.2)
    assert AdminAuditLog.objects.filter(object_type="Rollout", after__action="halt").exists()


def test_guardrail_compares_enforced_decisions_of_old_and_new_version_in_canary(org, author, rollout, fleet):
    author.post(f"/api/v1/rollouts/{rollout.pk}/promote")
    old, new = rollout.from_version.version, rollout.to_version.version
    _evidence(org, fleet["plat1"], version=old, decisions=["allow"] * 19 + ["deny"])  # 5%
    _evidence(org, fleet["pay1"], version=new, decisions=["allow"] * 15 + ["require_approval"] * 5)  # 25%
    services.rollouts_check()
    rollout.refresh_from_db()
    assert rollout.state == "halted"
    assert rollout.guardrail["source"] == "enforced"
    assert rollout.guardrail["observed_rate"] == pytest.approx(0.20)


def test_guardrail_within_threshold_keeps_running(org, rollout, fleet):
    old, new = rollout.from_version.version, rollout.to_version.version
    _evidence(org, fleet["plat1"], version=old, decisions=["allow"] * 40,
              shadow=(new, ["allow"] * 39 + ["deny"]))  # 2.5%
    services.rollouts_check()
    rollout.refresh_from_db()
    assert rollout.state == "running" and rollout.guardrail["state"] == "ok"


def test_guardrail_halts_when_observed_rate_exceeds_the_simulation_forecast(org, rollout, fleet):
    from cordum.simulation.models import Simulation

    Rollout.objects.filter(pk=rollout.pk).update(max_new_restriction_rate=0.9)
    now = timezone.now()
    Simulation.objects.create(
        organization=org, candidate_source="version", candidate_version=rollout.to_version,
        window_start=now - timedelta(days=7), window_end=now, status="completed", finished_at=now,
        report={"summary": {"total_calls": 1000, "tightened": 10, "newly_denied": 5, "newly_require_approval": 5}})
    old, new = rollout.from_version.version, rollout.to_version.version
    _evidence(org, fleet["plat1"], version=old, decisions=["allow"] * 20,
              shadow=(new, ["deny"] * 4 + ["allow"] * 16))  # 20% observed vs 1% forecast + 5% margin
    services.rollouts_check()
    rollout.refresh_from_db()
    assert rollout.state == "halted" and "forecast" in rollout.halted_reason


def test_check_task_completes_the_last_stage_and_auto_promotes_after_soak(v1, repository, fleet):
    from cordum.rollouts.services import rollout_plan_set
    from cordum.rollouts.tasks import rollouts_check_task

    rollout_plan_set(repository=repository, actor=None, auto_promote=True, stages=[
        {"name": "shadow", "kind": "shadow", "min_soak_seconds": 60},
        {"name": "all", "kind": "all", "min_soak_seconds": 60}])
    publish_version(repository, POLICY_V2, "v1.1.0")
    rollout = Rollout.objects.get()
    assert rollouts_check_task()["promoted"] == 0  # soak time not over
    Rollout.objects.filter(pk=rollout.pk).update(stage_started_at=timezone.now() - timedelta(seconds=61))
    assert rollouts_check_task()["promoted"] == 1
    Rollout.objects.filter(pk=rollout.pk).update(stage_started_at=timezone.now() - timedelta(seconds=61))
    assert rollouts_check_task()["completed"] == 1
    rollout.refresh_from_db()
    assert rollout.state == "completed"


@pytest.mark.django_db(transaction=True)
def test_a_rollout_committed_while_an_agent_reads_its_bundle_never_leaks_the_candidate(v1, plan, fleet, repository):
    """The organisation's first rollout commits between the selection's statements (another connection).

    The agent must still get the baseline: a check-then-read over two snapshots once handed it the candidate.
    """
    import threading

    from django.db import connection, connections

    from cordum.rollouts.assignment import bundle_for_agent

    def publish_elsewhere():
        try:
            publish_version(repository, POLICY_V2, "v2.0.0")
        finally:
            connections.close_all()

    state = {"published": False}

    def after_first_query(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not state["published"]:
            state["published"] = True
            worker = threading.Thread(target=publish_elsewhere)
            worker.start()
            worker.join()
        return result

    with connection.execute_wrapper(after_first_query):
        selected = bundle_for_agent(agent=fleet["pay1"])
    rollout = Rollout.objects.get()  # the candidate committed mid-read, in shadow
    assert state["published"] and rollout.stage_index == 0
    assert selected.bundle.manifest["version"] == v1.manifest["version"]
    assert bundle_for_agent(agent=fleet["pay1"]).bundle.manifest["version"] == v1.manifest["version"]
