"""Real sidecar processes against the live control plane follow a rollout through the real bundle long-poll:
shadow, canary, rollback, promote, and a stopped sidecar turns stale. Observed through their heartbeats."""

import pytest
from django.utils import timezone

from cordum.accounts.choices import Role
from cordum.common import notify
from cordum.rollouts import selectors, services
from cordum.rollouts.models import Rollout, SidecarInstance
from tests.factories import MembershipFactory, TeamFactory, agent_with_token
from tests.rollouts.conftest import FAST_STAGES, POLICY_V1, publish_version
from tests.rollouts.sidecars import FS_SERVER, SidecarProcess

# v2 gates file writes; v3 also denies directory listings.
POLICY_V2 = POLICY_V1 + """  - id: approve-writes
    match:
      topics: ["job.mcp-bridge.filesystem.write_file"]
    decision: require_approval
    reason: writes need a look
"""
POLICY_V3 = POLICY_V2 + """  - id: deny-listing
    match:
      topics: ["job.mcp-bridge.filesystem.list_directory"]
    decision: deny
    reason: no listing
"""

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _reported(org_id):
    return {s.agent.name: s for s in SidecarInstance.objects.filter(organization_id=org_id).select_related("agent")}


def wait_heartbeats(org_id, expected: dict, timeout: float = 45):
    """Block until the sidecars' heartbeats report `expected` {agent: (enforced, shadowed)}; woken per heartbeat."""

    def check():
        got = {name: (s.bundle_version, s.shadow_version or None) for name, s in _reported(org_id).items()}
        return got if all(got.get(k) == v for k, v in expected.items()) else None

    result = notify.wait_for(services.fleet_channel(org_id), timeout, check)
    got = {name: (s.bundle_version, s.shadow_version or None) for name, s in _reported(org_id).items()}
    assert result, f"sidecars report {got}, expected {expected}"
    return result


@pytest.fixture
def world(live_server, celery_eager, tmp_path, settings):
    settings.CORDUM_LONG_POLL_MAX_SECONDS = 5  # long-polls end soon after the sidecars stop
    if not FS_SERVER.exists():
        pytest.fail(f"{FS_SERVER} missing: run `npm install` (make test does)")
    from cordum.policies import services as policies
    from cordum.policies.models import PolicyRepository
    from tests.factories import OrganizationFactory

    org = OrganizationFactory(slug="acme-live", name="Acme")
    payments = TeamFactory(organization=org, slug="payments", name="Payments")
    platform = TeamFactory(organization=org, slug="platform", name="Platform")
    key = policies.signing_key_create(organization=org)
    repository = PolicyRepository.objects.create(organization=org, name="policies", url="/nonexistent")
    services.rollout_plan_set(repository=repository, actor=None, stages=FAST_STAGES, min_calls=1000)
    author = MembershipFactory(organization=org, role=Role.POLICY_AUTHOR).user
    v1 = publish_version(repository, POLICY_V1, "v1.0.0")
    sidecars = {}
    for name, team in (("claude-pay", payments), ("cursor-plat", platform)):
        _agent, issued = agent_with_token(organization=org, name=name, team=team)
        sidecars[name] = SidecarProcess(name=name, control_plane=live_server.url, token=issued.plaintext,
                                        trusted_keys={key.key_id: key.public_key}, workdir=tmp_path,
                                        team=team.slug)
    try:
        for sidecar in sidecars.values():
            sidecar.start()
        yield {"org": org, "repository": repository, "author": author, "v1": v1.manifest["version"],
               "sidecars": sidecars}
    finally:
        for sidecar in sidecars.values():
            sidecar.stop()


def test_sidecars_follow_shadow_canary_rollback_and_promote(world, client):
    from cordum.decisions.models import EvidenceRecord

    org, sidecars = world["org"], world["sidecars"]
    v1 = world["v1"]
    client.force_login(world["author"])
    wait_heartbeats(org.pk, {"claude-pay": (v1, None), "cursor-plat": (v1, None)})

    # v2 goes live: the plan starts it in shadow for everyone.
    v2 = publish_version(world["repository"], POLICY_V2, "v2.0.0").manifest["version"]
    rollout = Rollout.objects.get(to_version__version=v2)
    wait_heartbeats(org.pk, {"claude-pay": (v1, v2), "cursor-plat": (v1, v2)})

    # In shadow the old version is enforced (the write happens) and both decisions are recorded.
    plat = sidecars["cursor-plat"]
    plat.initialize()
    result = plat.call_tool("write_file", {"path": str(plat.project / "notes.txt"), "content": "hi"})
    assert not result.get("isError"), result
    assert (plat.project / "notes.txt").read_text() == "hi"

    def uploaded():
        s = _reported(org.pk).get("cursor-plat")
        return s is not None and s.spool_depth == 0 and s.counters.get("allow", 0) >= 1 and \
            EvidenceRecord.objects.filter(organization=org, tool="write_file").exists()

    assert notify.wait_for(services.fleet_channel(org.pk), 45, uploaded)
    record = EvidenceRecord.objects.get(organization=org, tool="write_file")
    assert (record.decision, record.policy_version) == ("allow", v1)
    assert {"decision": "require_approval", "policy_version": v2} in [
        {"decision": s["decision"], "policy_version": s["policy_version"]} for s in record.shadow]

    # Canary: only the payments team's sidecar enforces v2; the other keeps shadowing it.
    assert client.post(f"/api/v1/rollouts/{rollout.pk}/promote").status_code == 200
    wait_heartbeats(org.pk, {"claude-pay": (v2, None), "cursor-plat": (v1, v2)})

    # Rollback: everyone back on v1 at once, the canary included (it accepts the rollback bundle).
    assert client.post(f"/api/v1/rollouts/{rollout.pk}/rollback").status_code == 200
    wait_heartbeats(org.pk, {"claude-pay": (v1, None), "cursor-plat": (v1, None)})
    rollout.refresh_from_db()
    assert _reported(org.pk)["claude-pay"].bundle_sequence == rollout.rollback_bundle.sequence
    assert sidecars["claude-pay"].status()["bundle_version"] == v1

    # v3 goes live and is promoted through every stage: everyone ends on v3.
    v3 = publish_version(world["repository"], POLICY_V3, "v3.0.0").manifest["version"]
    rollout3 = Rollout.objects.get(to_version__version=v3)
    wait_heartbeats(org.pk, {"claude-pay": (v1, v3), "cursor-plat": (v1, v3)})
    for _ in range(2):
        assert client.post(f"/api/v1/rollouts/{rollout3.pk}/promote").status_code == 200
    wait_heartbeats(org.pk, {"claude-pay": (v3, None), "cursor-plat": (v3, None)})
    rollout3.refresh_from_db()
    assert rollout3.state == "completed"
    summary = selectors.fleet_summary(organization=org)
    assert (summary.on_target, summary.live, summary.target_version) == (2, 2, v3)


def test_a_stopped_sidecar_shows_as_stale(world):
    org, sidecars = world["org"], world["sidecars"]
    v1 = world["v1"]
    wait_heartbeats(org.pk, {"claude-pay": (v1, None), "cursor-plat": (v1, None)})
    sidecars["claude-pay"].stop()
    stopped = SidecarInstance.objects.get(organization=org, agent__name="claude-pay")

    def stale_for_sure():  # the live sidecar kept beating past the stopped one's stale deadline
        live = SidecarInstance.objects.get(organization=org, agent__name="cursor-plat")
        return live.last_seen_at > SidecarInstance.objects.get(pk=stopped.pk).stale_after

    assert notify.wait_for(services.fleet_channel(org.pk), 60, stale_for_sure)
    rows = {r.sidecar.agent.name: r for r in selectors.fleet_rows(organization=org, now=timezone.now())}
    assert rows["claude-pay"].is_stale and not rows["cursor-plat"].is_stale
    assert selectors.fleet_summary(organization=org, rows=list(rows.values())).stale == 1


def test_guardrail_halts_a_rollout_when_real_shadow_decisions_tighten_too_much(world):
    from cordum.rollouts.tasks import rollouts_check_task

    org, sidecars = world["org"], world["sidecars"]
    v1 = world["v1"]
    services.rollout_plan_set(repository=world["repository"], actor=None, min_calls=3,
                              max_new_restriction_rate=0.05)
    v2 = publish_version(world["repository"], POLICY_V2, "v2.0.0").manifest["version"]
    wait_heartbeats(org.pk, {"claude-pay": (v1, v2), "cursor-plat": (v1, v2)})
    plat = sidecars["cursor-plat"]
    plat.initialize()
    for i in range(3):  # allowed by v1, would need approval under v2: 100% newly gated
        assert not plat.call_tool("write_file", {"path": str(plat.project / f"f{i}.txt"), "content": "x"}).get(
            "isError")

    def uploaded():
        s = _reported(org.pk).get("cursor-plat")
        return s is not None and s.spool_depth == 0 and s.counters.get("allow", 0) >= 3

    assert notify.wait_for(services.fleet_channel(org.pk), 45, uploaded)
    assert rollouts_check_task()["halted"] == 1
    rollout = Rollout.objects.get(to_version__version=v2)
    assert rollout.state == "halted" and rollout.guardrail["source"] == "shadow"
    assert rollout.guardrail["observed_rate"] == 1.0
