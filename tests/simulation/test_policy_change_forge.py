"""A change's result posted back to GitHub: the commit status of its head and one summary comment per pull request,
updated in place. GitHub is a local server that checks every request against GitHub's published OpenAPI
description (tests/forge/github_server.py) and records it."""

import pytest

from cordum.policies import services as policy_services
from cordum.simulation import services
from cordum.simulation.models import PolicyChange
from tests.forge.github_server import GitHubServer
from tests.policies.conftest import signed_headers
from tests.simulation.data import BASE_POLICY, CANDIDATE_POLICY, INVALID_POLICY

GATES = "version: v1\ngates:\n  max_newly_denied: 10%\n"
# The fix: only the rule no recorded call reaches; nothing is newly denied, the gate passes.
FIX = BASE_POLICY + """\
  - id: deny-terraform-destroy
    match:
      topics: ["job.mcp-bridge.terraform.destroy"]
    decision: deny
"""


def _push_pull_request(workspace, text, message, number=7):
    sha = workspace.commit(text, message, branch=f"fork-{number}", push=False)
    workspace.clone.git.push("origin", "--force", f"{sha}:refs/pull/{number}/head")
    return sha


def _configure(repository, github):
    policy_services.repository_update(repository=repository, actor=None, forge_repository="acme/policies",
                                      forge_api_url=github.url, forge_token="ghp_test_token")
    repository.refresh_from_db()


def _refresh_run_post(repository, ref):
    policy_services.sync_repository(repository=repository)
    repository.refresh_from_db()
    services.policy_changes_refresh(repository=repository)
    change = PolicyChange.objects.select_related("repository", "version", "simulation").get(
        repository=repository, ref=ref)
    if change.simulation is not None and not change.simulation.is_finished:
        services.simulation_run(simulation=change.simulation)
        change.simulation.refresh_from_db()
    return change, services.policy_change_post(change=change)


@pytest.mark.django_db
def test_a_failing_pull_request_gets_a_failure_status_and_one_comment_and_its_fix_turns_both_around(
        git_workspace, git_repository, recorded):
    git_workspace.commit(GATES, "Gates", path="cordum.yaml")
    with GitHubServer() as github:
        _configure(git_repository, github)
        head = _push_pull_request(git_workspace, CANDIDATE_POLICY, "Deny .env reads")
        change, state = _refresh_run_post(git_repository, "pull/7/head")
        assert state == "failure"
        status = github.statuses[head][-1]
        assert status["state"] == "failure" and status["context"] == "cordum/policy"
        assert status["description"].startswith("5 of 15 calls change (5 newly denied")
        assert "gates fail: max_newly_denied" in status["description"]
        assert status["target_url"].endswith(f"/simulations/changes/{git_repository.pk}/pull/7/head")
        [(comment_id, body)] = github.comments[7].items()
        assert "❌ gates fail" in body and "| newly denied | 5 |" in body and "max_newly_denied" in body
        assert "claude-code-mo" not in body  # figures only: no example call reaches the pull request

        # Posting the same result again sends nothing.
        requests = len(github.requests)
        change.refresh_from_db()
        assert services.policy_change_post(change=change) == "unchanged" and len(github.requests) == requests

        fixed = _push_pull_request(git_workspace, FIX, "Only deny terraform destroy")
        _change, state = _refresh_run_post(git_repository, "pull/7/head")
        assert state == "success" and github.statuses[fixed][-1]["state"] == "success"
        assert list(github.comments[7]) == [comment_id]  # the same comment, updated in place
        assert "✅ gates pass" in github.comments[7][comment_id]
        assert [r.method for r in github.requests if "/comments/" in r.path] == ["PATCH"]
        assert all(r.headers["authorization"] == "token ghp_test_token" for r in github.requests)
        assert github.invalid == []


@pytest.mark.django_db
def test_an_invalid_policy_on_a_branch_gets_a_failure_status_naming_file_line_and_column(
        git_workspace, git_repository):
    with GitHubServer() as github:
        _configure(git_repository, github)
        head = git_workspace.commit(INVALID_POLICY, "oops", branch="broken")
        _change, state = _refresh_run_post(git_repository, "broken")
        assert state == "failure"
        assert github.statuses[head][-1]["description"].startswith("invalid policy: safety.yaml:3:")
        assert github.comments == {}  # a branch is no pull request: a status only
        assert github.invalid == []


@pytest.mark.django_db
def test_a_forge_that_refuses_is_recorded_on_the_change_and_raised_for_the_task_to_retry(
        git_workspace, git_repository, recorded):
    from cordum.simulation.forge import ForgeError

    with GitHubServer() as github:
        _configure(git_repository, github)
        policy_services.repository_update(repository=git_repository, actor=None, forge_api_url=github.url + "/nowhere")
        git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
        with pytest.raises(ForgeError, match=r"GitHub refused the commit status \(4\d\d\)"):
            _refresh_run_post(git_repository, "deny-env")
        change = PolicyChange.objects.get(repository=git_repository, ref="deny-env")
        assert "GitHub refused the commit status" in change.forge_error and change.forge_posted == ""
        assert "ghp_test_token" not in change.forge_error


@pytest.mark.django_db
def test_without_a_forge_configured_nothing_is_posted(git_workspace, git_repository, recorded):
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    _change, state = _refresh_run_post(git_repository, "deny-env")
    assert state == "not configured"


@pytest.mark.django_db(transaction=True)
def test_a_signed_webhook_for_a_fork_pull_request_ends_in_a_commit_status_through_a_real_worker(
        celery_worker, client, git_workspace, git_repository, recorded):
    git_workspace.commit(GATES, "Gates", path="cordum.yaml")
    policy_services.sync_repository(repository=git_repository)
    with GitHubServer() as github:
        _configure(git_repository, github)
        head = _push_pull_request(git_workspace, CANDIDATE_POLICY, "Deny .env reads", number=9)
        body = b'{"action": "synchronize", "number": 9}'
        response = client.post(f"/hooks/git/{git_repository.pk}", body, content_type="application/json",
                               **signed_headers(body))
        assert response.status_code == 202
        assert github.wait_for_status(head, "failure", timeout=90), github.statuses
        with github.changed:
            assert github.changed.wait_for(lambda: 9 in github.comments, 30)
        assert "❌ gates fail" in next(iter(github.comments[9].values()))
        assert github.invalid == []


@pytest.mark.django_db
def test_a_poll_that_finds_nothing_new_sends_nothing_to_github(celery_eager, django_capture_on_commit_callbacks,
                                                               git_workspace, git_repository, recorded):
    with GitHubServer() as github:
        _configure(git_repository, github)
        head = _push_pull_request(git_workspace, CANDIDATE_POLICY, "Deny .env reads")
        with django_capture_on_commit_callbacks(execute=True):
            policy_services.sync_repository(repository=git_repository)
            git_repository.refresh_from_db()
            services.policy_changes_refresh(repository=git_repository)
        assert [s["state"] for s in github.statuses[head]] == ["success"]  # simulated inline (eager), then posted
        sent = len(github.requests)
        with django_capture_on_commit_callbacks(execute=True):
            services.policy_changes_refresh(repository=git_repository)
        assert len(github.requests) == sent
        assert github.invalid == []
