"""The demo week: decided by the real policy engine, ingested through the pipeline, idempotent."""

import pytest

from cordum.accounts import demo as accounts_demo
from cordum.decisions import demo
from cordum.decisions.audit import verify_chain
from cordum.decisions.models import EvidenceRecord

pytestmark = pytest.mark.django_db


def test_demo_week_is_policy_decided_chained_and_idempotent(celery_eager, tmp_path, django_capture_on_commit_callbacks):
    ctx = {"state_dir": tmp_path, "evidence_sessions_per_agent_day": 1.0}
    accounts_demo.load(ctx)
    with django_capture_on_commit_callbacks(execute=True):  # the demo runs Celery eagerly after each commit
        demo.load(ctx)
    org = ctx["organization"]
    stored = EvidenceRecord.objects.filter(organization=org)
    count = stored.count()
    assert count > 500
    assert set(stored.values_list("agent_name", flat=True)) == set(ctx["agents"])
    decisions = set(stored.filter(record_type="decision").values_list("decision", flat=True))
    assert decisions == {"allow", "require_approval", "deny"}
    # The template policy's rules, not invented ones.
    assert {"allow-code-read", "approve-code-write"} <= set(stored.values_list("rule", flat=True))
    assert stored.filter(record_type="outcome", outcome="approved").exclude(reviewer="").exists()
    for agent in type(ctx["agents"]["cursor-web"]).objects.filter(organization=org):  # seen at its last call
        newest = stored.filter(agent_name=agent.name).order_by("-timestamp").first().timestamp
        assert agent.last_seen_at == newest
    with django_capture_on_commit_callbacks(execute=True):
        demo.load(ctx)
    assert stored.count() == count
    assert verify_chain(organization_id=org.pk).ok


def test_replaying_the_demo_week_with_the_policy_that_decided_it_changes_nothing():
    """The week honours the policy's session limits as a sidecar does (no call allowed past max_duration)."""
    from pathlib import Path

    from django.conf import settings

    from cordum.policy import compile_policy, load_policy_file
    from cordum.policy.simulate import simulate_records

    ctx: dict = {}
    accounts_demo.load(ctx)
    records = [r for agent_records in demo.generate(ctx).values() for r in agent_records]
    template = load_policy_file(Path(settings.BASE_DIR) / "policies_repo_template" / "safety.yaml").policy
    assert template.limits.session.max_duration is not None
    summary = simulate_records(compile_policy(template, "v1.0.0@template"), records)["summary"]
    assert summary["total_calls"] > 10_000
    assert summary["changed_calls"] == 0, summary
    assert any(r.get("rule") == "limits.session.max_duration" for r in records)  # long night sessions are cut
    # and its session data-flow rules: a web fetch after a Terraform state read in the same session is denied
    flows = [r for r in records if (r.get("facts") or {}).get("flow")]
    assert flows and all(r["rule"] == "deny-egress-after-secret-read" for r in flows)
    assert summary["flows_replayed"] is True
