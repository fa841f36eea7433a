"""The sync service against real git repositories: versions per commit, validity, live selection, bundles."""

import pytest

from cordum.policies import gitrepo, selectors, services
from cordum.policies.choices import KeyStatus, SyncStatus
from cordum.policies.models import PolicyBundle, PolicyRepository, PolicyVersion
from cordum.sidecar.bundles import BundleError, bundle_verify
from tests.policies.conftest import POLICY_INVALID, POLICY_V2

pytestmark = pytest.mark.django_db


def _trusted(org):
    return {k.key_id: k.public_key for k in selectors.signing_key_list(organization=org, active_only=True)}


def test_first_sync_records_the_tagged_commit_makes_it_live_and_publishes_a_signed_bundle(repository, workspace, org):
    result = services.sync_repository(repository=repository)

    version = PolicyVersion.objects.get(repository=repository)
    head = workspace.clone.head.commit.hexsha
    assert version.commit_sha == head and version.tag == "v1.0.0" and version.version == f"v1.0.0@{head[:7]}"
    assert version.is_valid and version.is_live and version.branches == ["main"]
    assert version.author == "Pat Author" and version.message == "Initial policy"
    bundle = PolicyBundle.objects.get(organization=org)
    assert bundle.sequence == 1 and result.published_bundle == 1
    assert bundle.manifest["commit"] == head and bundle.manifest["version"] == version.version
    assert bundle.manifest["org"] == "acme" and bundle.manifest["repo"] == "policies"
    bundle_verify(bundle.bundle, _trusted(org))
    repository.refresh_from_db()
    assert repository.sync_status == SyncStatus.COMPLETED and repository.branch_heads == {"main": head}


def test_invalid_commit_is_recorded_with_line_numbered_errors_and_the_live_bundle_does_not_change(
    repository, workspace, org
):
    services.sync_repository(repository=repository)
    live_before = PolicyBundle.objects.get(organization=org)
    bad_sha = workspace.commit(POLICY_INVALID, "Oops: bad decision")

    result = services.sync_repository(repository=repository)

    bad = PolicyVersion.objects.get(commit_sha=bad_sha)
    assert not bad.is_valid and not bad.is_live and bad.policy is None
    assert result.invalid_versions == [bad.version]
    assert bad.errors[0]["file"] == "safety.yaml" and bad.errors[0]["line"] == 8
    assert "maybe" in bad.errors[0]["message"]
    assert list(PolicyBundle.objects.filter(organization=org)) == [live_before]
    assert PolicyVersion.objects.get(is_live=True).commit_sha == live_before.manifest["commit"]


def test_sync_is_incremental_and_a_new_valid_commit_becomes_live(repository, workspace, org):
    services.sync_repository(repository=repository)
    assert services.sync_repository(repository=repository).new_versions == []
    assert PolicyBundle.objects.count() == 1

    workspace.commit(POLICY_INVALID, "broken")
    good = workspace.commit(POLICY_V2, "Require approval for git push", tag="v1.1.0")
    result = services.sync_repository(repository=repository)

    assert len(result.new_versions) == 1 and len(result.invalid_versions) == 1
    live = PolicyVersion.objects.get(is_live=True)
    assert live.commit_sha == good and live.version.startswith("v1.1.0@")
    latest = PolicyBundle.objects.filter(organization=org).first()
    assert latest.sequence == 2 and latest.manifest["commit"] == good and not latest.rollback


def test_branch_commits_are_versioned_for_review_but_never_go_live(repository, workspace, org):
    services.sync_repository(repository=repository)
    sha = workspace.commit(POLICY_V2, "Propose git push approval", branch="proposed/git-push")

    services.sync_repository(repository=repository)

    proposed = PolicyVersion.objects.get(commit_sha=sha)
    assert proposed.branches == ["proposed/git-push"] and proposed.is_valid and not proposed.is_live
    assert proposed.version == f"proposed/git-push@{sha[:7]}"
    assert PolicyBundle.objects.count() == 1
    review = selectors.policy_version_review(version=proposed)
    assert review["live_version"].startswith("v1.0.0@")
    assert "approve-git-push" in review["diff_vs_live"]["text"]
    found = selectors.policy_version_lookup(repository=repository, branch="proposed/git-push")
    assert found == proposed
    assert selectors.policy_version_lookup(repository=repository, commit=sha[:8]) == proposed


def test_merging_a_branch_adds_the_live_branch_to_its_versions_and_publishes_it(repository, workspace, org):
    services.sync_repository(repository=repository)
    sha = workspace.commit(POLICY_V2, "Propose", branch="proposed/x")
    services.sync_repository(repository=repository)
    workspace.clone.git.merge("proposed/x", "--ff-only")
    workspace.push()

    services.sync_repository(repository=repository)

    merged = PolicyVersion.objects.get(commit_sha=sha)
    assert merged.branches == ["main", "proposed/x"] and merged.is_live
    assert merged.version == f"main@{sha[:7]}"  # named after the live branch it now ships from
    assert PolicyBundle.objects.first().manifest["commit"] == sha
    assert PolicyBundle.objects.first().manifest["version"] == f"main@{sha[:7]}"


def test_a_sync_while_another_runs_is_skipped_and_asks_for_another_round(repository):
    PolicyRepository.objects.filter(pk=repository.pk).update(sync_status=SyncStatus.SYNCING)
    from django.utils import timezone

    PolicyRepository.objects.filter(pk=repository.pk).update(sync_started_at=timezone.now())

    assert services.sync_repository(repository=repository).skipped
    repository.refresh_from_db()
    assert repository.resync_requested and not PolicyVersion.objects.exists()


def test_unreachable_remote_fails_with_the_error_kept_for_the_ui(org, signing_key, tmp_path):
    repository, _ = services.repository_create(organization=org, actor=None, name="gone",
                                               url=str(tmp_path / "does-not-exist.git"))
    with pytest.raises(gitrepo.GitFetchError):
        services.sync_repository(repository=repository)
    repository.refresh_from_db()
    assert repository.sync_status == SyncStatus.FAILED
    assert "git fetch" in repository.last_error and "does-not-exist" in repository.last_error


def test_live_version_without_a_signing_key_is_not_published_and_says_why(org, workspace):
    repository, _ = services.repository_create(organization=org, actor=None, name="p", url=str(workspace.remote_path))
    services.sync_repository(repository=repository)
    repository.refresh_from_db()
    assert not PolicyBundle.objects.exists() and "No active signing key" in repository.last_error

    key = services.signing_key_create(organization=org)

    bundle = PolicyBundle.objects.get()
    bundle_verify(bundle.bundle, {key.key_id: key.public_key})


def test_key_rotation_resigns_the_current_bundle_with_the_new_key_only(repository, org, signing_key):
    services.sync_repository(repository=repository)
    new_key = services.signing_key_rotate(organization=org)

    signing_key.refresh_from_db()
    assert signing_key.status == KeyStatus.RETIRED and new_key.status == KeyStatus.ACTIVE
    current = PolicyBundle.objects.first()
    assert [s["key_id"] for s in current.bundle["signatures"]] == [new_key.key_id]
    bundle_verify(current.bundle, {new_key.key_id: new_key.public_key})
    with pytest.raises(BundleError):
        bundle_verify(current.bundle, {signing_key.key_id: signing_key.public_key})


def test_during_a_grace_rotation_both_keys_sign(repository, org, signing_key):
    services.sync_repository(repository=repository)
    new_key = services.signing_key_rotate(organization=org, retire_old=False)
    current = PolicyBundle.objects.first()
    assert {s["key_id"] for s in current.bundle["signatures"]} == {signing_key.key_id, new_key.key_id}


def test_credentials_and_webhook_secret_are_encrypted_at_rest(org):
    repository, secret = services.repository_create(organization=org, actor=None, name="x", url="https://example.com/r.git",
                                                    credentials="ghp_supersecret")
    raw = PolicyRepository.objects.values("credentials_encrypted", "webhook_secret_encrypted").get(pk=repository.pk)
    assert "ghp_supersecret" not in raw["credentials_encrypted"] and secret not in raw["webhook_secret_encrypted"]
    assert repository.credentials == "ghp_supersecret" and repository.webhook_secret == secret


def test_policy_in_a_subdirectory_of_a_monorepo(org, signing_key, workspace):
    import os

    os.makedirs(workspace.clone.working_tree_dir + "/governance", exist_ok=True)
    sha = workspace.commit(POLICY_V2, "monorepo policy", path="governance/safety.yaml")
    repository, _ = services.repository_create(organization=org, actor=None, name="mono", url=str(workspace.remote_path),
                                               policy_path="governance/safety.yaml")
    services.sync_repository(repository=repository)
    assert list(PolicyVersion.objects.filter(repository=repository).values_list("commit_sha", flat=True)) == [sha]


def test_sync_policies_command_syncs_now_with_progress_and_says_what_went_live(repository, workspace, org):
    import io

    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    call_command("sync_policies", "--org", "acme", stdout=out, stderr=err)
    head = workspace.clone.head.commit.hexsha
    progress = err.getvalue().splitlines()
    assert progress[0] == "sync acme/policies: 0% Fetching"
    assert progress[-1] == "sync acme/policies: 100% done"
    assert out.getvalue().strip() == f"sync acme/policies: 1 new version(s); live v1.0.0@{head[:7]}; published bundle #1"
    assert PolicyVersion.objects.get(repository=repository).is_live


def test_sync_policies_command_fails_with_the_git_error(org, signing_key, tmp_path):
    import io

    from django.core.management import CommandError, call_command

    services.repository_create(organization=org, actor=None, name="policies", url=str(tmp_path / "missing"))
    err = io.StringIO()
    with pytest.raises(CommandError, match="failed to sync"):
        call_command("sync_policies", stdout=io.StringIO(), stderr=err)
    assert "sync acme/policies:" in err.getvalue() and "failed" in err.getvalue()


def test_pull_and_merge_request_heads_from_forks_are_synced_and_validated_like_branches(repository, workspace, org):
    services.sync_repository(repository=repository)
    fork_pr = workspace.commit(POLICY_V2, "Fork: require approval for git push", push=False)
    workspace.clone.git.push("origin", f"{fork_pr}:refs/pull/7/head")
    workspace.clone.git.reset("--hard", "HEAD~1")  # the second proposal forks from main, not from the first
    bad_mr = workspace.commit(POLICY_INVALID, "Fork: broken", push=False)
    workspace.clone.git.push("origin", f"{bad_mr}:refs/merge-requests/3/head")

    services.sync_repository(repository=repository)

    pr = PolicyVersion.objects.get(commit_sha=fork_pr)
    assert pr.branches == ["pull/7/head"] and pr.is_valid and not pr.is_live
    mr = PolicyVersion.objects.get(commit_sha=bad_mr)
    assert mr.branches == ["merge-requests/3/head"] and not mr.is_valid
    repository.refresh_from_db()
    assert repository.branch_heads["pull/7/head"] == fork_pr
    assert repository.branch_heads["merge-requests/3/head"] == bad_mr
    assert PolicyBundle.objects.count() == 1


def test_repository_page_lists_branches_and_fork_pull_requests_with_head_author_and_validity_newest_first(
    client, admin, repository, workspace, org
):
    services.sync_repository(repository=repository)
    workspace.commit(POLICY_INVALID, "Fork: broken", push=False)
    later = "2030-01-01T00:00:00+00:00"  # committed after main's head even within the same second
    workspace.clone.git.commit("--amend", "--no-edit", env={"GIT_AUTHOR_DATE": later, "GIT_COMMITTER_DATE": later})
    fork_pr = workspace.clone.head.commit.hexsha
    workspace.clone.git.push("origin", f"{fork_pr}:refs/pull/7/head")
    workspace.clone.git.reset("--hard", "HEAD~1")
    services.sync_repository(repository=repository)
    client.force_login(admin)

    page = client.get(f"/policies/repositories/{repository.pk}/").content.decode()

    table = page[page.index('id="branch-rows"'):page.index("<h2>Versions</h2>")]
    assert table.index("pull/7/head") < table.index("main")  # the pull request is the newer activity
    pr_row = table[table.index("pull/7/head"):table.index("main")]
    assert fork_pr[:7] in pr_row and "Pat Author" in pr_row and "invalid" in pr_row


def test_deeply_nested_commit_on_a_branch_is_invalid_and_sync_of_other_commits_goes_on(repository, workspace, org):
    services.sync_repository(repository=repository)
    deep = "version: v1\nrules: " + "[" * 5000 + "]" * 5000 + "\n"
    bad_sha = workspace.commit(deep, "Nested too deeply", branch="attack/deep")
    good = workspace.commit(POLICY_V2, "Require approval for git push", tag="v1.1.0")

    result = services.sync_repository(repository=repository)

    bad = PolicyVersion.objects.get(commit_sha=bad_sha)
    assert not bad.is_valid and not bad.is_live and bad.policy is None
    assert "nested too deeply" in bad.errors[0]["message"] and bad.errors[0]["line"] == 2
    assert PolicyVersion.objects.get(is_live=True).commit_sha == good
    assert bad.version in result.invalid_versions


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb inside a real rule's argument conditions: 10**levels 'lol's once expanded."""
    lines = ["version: v1\nrules:\n  - id: a\n    decision: deny\n    match:\n      args:",
             "        x0: {equals: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]}"]
    for i in range(1, levels):
        refs = ", ".join([f"*l{i - 1}"] * 10)
        lines.append(f"        x{i}: {{equals: &l{i} [{refs}]}}")
    return "\n".join(lines) + "\n"


def test_hostile_yaml_commits_are_recorded_invalid_naming_the_limit_and_sync_goes_on(repository, workspace, org):
    """Deep nesting used to raise RecursionError and freeze sync of the repository; an alias bomb was stored."""
    from cordum.policy.loader import MAX_POLICY_BYTES

    services.sync_repository(repository=repository)
    deep_sha = workspace.commit("version: v1\nrules: " + "[" * 3000 + "]" * 3000 + "\n", "deeply nested")
    bomb_sha = workspace.commit(billion_laughs(), "alias bomb", branch="laughs")
    huge_sha = workspace.commit(POLICY_V2 + "# " + "x" * MAX_POLICY_BYTES + "\n", "huge", branch="huge")
    feature_sha = workspace.commit(POLICY_V2, "a reviewed change", branch="feature")
    good_sha = workspace.commit(POLICY_V2, "Require approval for git push", tag="v1.1.0")

    result = services.sync_repository(repository=repository)

    repository.refresh_from_db()
    assert repository.sync_status == SyncStatus.COMPLETED and repository.last_error == ""
    versions = {v.commit_sha: v for v in PolicyVersion.objects.filter(repository=repository)}
    expected = {deep_sha: "nested too deeply", bomb_sha: "expands to too many nodes",
                huge_sha: f"over the limit of {MAX_POLICY_BYTES} bytes"}
    for sha, limit in expected.items():
        bad = versions[sha]
        assert not bad.is_valid and bad.policy is None and not bad.is_live
        assert limit in bad.errors[0]["message"] and bad.errors[0]["file"] == "safety.yaml"
        assert len(bad.source_text) <= MAX_POLICY_BYTES
    assert versions[deep_sha].errors[0]["line"] == 2
    assert versions[bomb_sha].errors[0]["line"] == 12
    assert sorted(result.invalid_versions) == sorted(versions[s].version for s in expected)
    assert versions[feature_sha].is_valid and versions[good_sha].is_valid and versions[good_sha].is_live
    assert PolicyBundle.objects.filter(organization=org).first().manifest["commit"] == good_sha

    # Later commits on every branch are still synced.
    later = workspace.commit(POLICY_V2.replace("reads are fine", "reads are safe"), "reword", branch="laughs")
    assert len(services.sync_repository(repository=repository).new_versions) == 1
    assert PolicyVersion.objects.get(commit_sha=later).is_valid
