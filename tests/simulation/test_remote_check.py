"""`cordum policy check --remote`: CI asks the real control plane (a live server) to simulate its commit and gates
on the answer."""

import os
import subprocess
import sys

import pytest

from cordum.accounts.choices import Role
from cordum.accounts.services import user_token_create
from tests.factories import MembershipFactory
from tests.simulation.data import CANDIDATE_POLICY

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def check(sim_org, live_server, celery_eager):
    membership = MembershipFactory(organization=sim_org, role=Role.POLICY_AUTHOR)
    _token, raw = user_token_create(user=membership.user, name="ci")

    def run(*args, token=raw):
        env = {**os.environ, "CORDUM_TOKEN": token}
        return subprocess.run([sys.executable, "-m", "cordum", "policy", "check", "--remote", live_server.url, *args],
                              capture_output=True, text=True, env=env, timeout=120, check=False)

    return run


def test_ci_check_simulates_the_synced_commit_and_gates_on_newly_denied_calls(versions, recorded, check):
    passed = check("--commit", "b" * 40, "--fail-if-newly-denied-over", "5")
    assert passed.returncode == 0, passed.stderr
    assert "5 newly denied" in passed.stdout and "Gate passed" in passed.stdout
    failed = check("--commit", "b" * 40, "--fail-if-newly-denied-over", "4")
    assert failed.returncode == 1 and "Gate FAILED: 5 newly denied, at most 4 allowed." in failed.stdout


def test_an_unsynced_commit_falls_back_to_the_policy_file(versions, recorded, check, tmp_path):
    policy = tmp_path / "safety.yaml"
    policy.write_text(CANDIDATE_POLICY)
    result = check("--commit", "d" * 40, "--wait-for-sync", "0", "--policy", str(policy))
    assert result.returncode == 0, result.stderr
    assert "is not synced" in result.stderr and "5 newly denied" in result.stdout
    refused = check("--commit", "d" * 40, "--wait-for-sync", "0")
    assert refused.returncode == 2 and "no policy version for commit" in refused.stderr


def test_a_check_without_a_valid_token_cannot_run(versions, check):
    assert check("--commit", "b" * 40, token="").returncode == 2
    wrong = check("--commit", "b" * 40, token="cdm_user_not-a-token")
    assert wrong.returncode == 2 and "refused" in wrong.stderr
