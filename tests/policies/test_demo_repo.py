"""The demo policy repository: every commit a reviewer is shown keeps the repository's own tests green."""

import git

from cordum.cli import main as cordum_cli
from cordum.policies import demo


def test_every_demo_branch_passes_its_own_policy_tests(tmp_path, capsys):
    path = tmp_path / "demo-policies"
    demo._build_repo(path)
    repo = git.Repo(path)
    for ref in ("v1.2.0", demo.PROPOSED_BRANCH):
        repo.git.checkout(ref)
        capsys.readouterr()
        assert cordum_cli(["policy", "test", str(path)]) == 0, (ref, capsys.readouterr().out)


def test_the_proposed_commit_carries_test_cases_for_its_new_rules(tmp_path, capsys):
    path = tmp_path / "demo-policies"
    demo._build_repo(path)
    repo = git.Repo(path)
    changed = repo.git.show("--name-only", "--format=", demo.PROPOSED_BRANCH).split()
    assert sorted(changed) == ["safety.yaml", demo.PROPOSED_TESTS_FILE]
    repo.git.checkout(demo.PROPOSED_BRANCH)
    assert cordum_cli(["policy", "test", str(path), "-v"]) == 0
    out = capsys.readouterr().out
    assert "test runs are allowed" in out and "npm publish is denied" in out
    untested = [line for line in out.splitlines() if "rules without a test case" in line]
    assert all("allow-test-runs" not in line and "deny-npm-publish" not in line for line in untested)
