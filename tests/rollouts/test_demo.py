"""The demo: a rollout plan on the demo repo, and merging its proposed branch starts a rollout."""

import io

import pytest
from django.core.management import call_command

from cordum.rollouts.models import Rollout, RolloutPlan

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(tmp_path, settings):
    from cordum.accounts import demo as accounts_demo
    from cordum.policies import demo as policies_demo
    from cordum.rollouts import demo as rollouts_demo

    settings.CORDUM_GIT_CACHE_DIR = tmp_path / "git-cache"
    ctx = {"stdout": io.StringIO(), "state_dir": tmp_path}
    for module in (accounts_demo, policies_demo, rollouts_demo):
        module.load(ctx)
    return ctx


def test_demo_plan_is_created_once(demo):
    from cordum.rollouts import demo as rollouts_demo

    rollouts_demo.load(demo)
    assert RolloutPlan.objects.count() == 1
    assert [s["name"] for s in RolloutPlan.objects.get().stages] == ["shadow", "canary-payments", "all"]


def test_merge_demo_branch_starts_a_rollout_in_shadow(demo, client):
    out = io.StringIO()
    call_command("merge_demo_branch", stdout=out)
    rollout = Rollout.objects.get()
    assert rollout.state == "running" and rollout.stage["name"] == "shadow"
    assert "deny-npm-publish" in str(rollout.to_version.policy)
    assert rollout.from_version == demo["live_policy_version"]
    assert f"Rollout #{rollout.pk}" in out.getvalue()
    # Running it again merges nothing and starts nothing new.
    again = io.StringIO()
    call_command("merge_demo_branch", stdout=again)
    assert "already merged" in again.getvalue() and Rollout.objects.count() == 1
    # Every demo agent shadows the proposed version and enforces the live one.
    token = demo["agent_tokens"]["claude-code-mo"]
    body = client.get("/api/v1/bundle", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert body["manifest"]["version"] == rollout.from_version.version
    assert body["shadow_bundle"]["manifest"]["version"] == rollout.to_version.version


def test_rollouts_check_command_runs_the_guardrails_once(demo):
    call_command("merge_demo_branch", stdout=io.StringIO())
    out = io.StringIO()
    call_command("rollouts_check", stdout=out)
    assert out.getvalue().startswith("checked: 1")
