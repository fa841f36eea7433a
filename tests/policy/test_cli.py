"""The `cordum` CLI, run as a real subprocess (`python -m cordum`)."""

import json
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT, TEMPLATE


def cordum(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "cordum", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, input=stdin, timeout=60,
    )


def test_policy_test_passes_on_the_template():
    r = cordum("policy", "test", "policies_repo_template")
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed, 0 failed" in r.stdout
    assert "rules without a test case" not in r.stdout  # every rule is exercised


def test_policy_test_fails_with_a_clear_per_case_message(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(TEMPLATE, repo)
    (repo / "tests" / "extra.yaml").write_text(
        "cases:\n"
        "  - name: reading .env is allowed (wrong on purpose)\n"
        "    call: {server: filesystem, tool: read_file, arguments: {path: .env}}\n"
        "    expect: {decision: allow}\n"
    )
    r = cordum("policy", "test", repo)
    assert r.returncode == 1
    assert "extra.yaml:2 reading .env is allowed (wrong on purpose)" in r.stdout
    assert "decision: expected allow, got deny" in r.stdout
    assert "1 failed" in r.stdout
    j = json.loads(cordum("policy", "test", repo, "--format", "json").stdout)
    assert j["ok"] is False and j["failed"] == 1


def test_lint_valid_policy_exits_zero():
    r = cordum("policy", "lint", TEMPLATE / "safety.yaml")
    assert r.returncode == 0 and r.stdout == ""


def test_lint_invalid_policy_prints_located_lines_and_exits_one(tmp_path):
    p = tmp_path / "safety.yaml"
    p.write_text("version: v1\nrules:\n  - id: a\n    match: {topics: [x]}\n    decision: alow\n")
    r = cordum("policy", "lint", p)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        f"{p}:5:15: invalid decision 'alow': expected allow, require_approval or deny (did you mean 'allow'?)"
    ]
    j = json.loads(cordum("policy", "lint", p, "--format", "json").stdout)
    assert j["ok"] is False and j["errors"][0]["line"] == 5


def test_lint_fails_on_a_rule_an_earlier_deny_makes_unreachable(tmp_path):
    p = tmp_path / "safety.yaml"
    p.write_text(
        "version: v1\nrules:\n  - {id: d, match: {topics: ['*']}, decision: deny}\n"
        "  - {id: a, match: {topics: [job.x]}, decision: allow}\n"
    )
    r = cordum("policy", "lint", p)
    assert r.returncode == 1
    assert f"{p}:4:5: rule 'a' is unreachable" in r.stdout + r.stderr


def test_explain_prints_one_json_object():
    call = {"server": "git", "tool": "git_push", "arguments": {"remote": "origin", "branch": "main"},
            "agent": "claude-code", "team": "payments", "environment": "prod"}
    r = cordum("policy", "explain", "--policy", TEMPLATE / "safety.yaml", "--call", json.dumps(call))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {k: out[k] for k in ("decision", "rule", "matched", "shadow", "topic", "risk_tags", "target")} == {
        "decision": "require_approval", "rule": "approve-git-push",
        "matched": ["approve-git-push", "two-person-prod-push"], "shadow": [],
        "topic": "job.mcp-bridge.git.push", "risk_tags": ["deploy"], "target": "origin/main",
    }
    assert out["approval"]["approvals_required"] == 2  # a production push is a two-person decision
    assert "reason" in out
    digest = __import__("hashlib").sha256((TEMPLATE / "safety.yaml").read_bytes()).hexdigest()[:7]
    assert out["policy_version"] == f"local:safety.yaml@{digest}"  # every decision names the text that decided it


def test_explain_accepts_a_topic_call_from_stdin():
    r = cordum("policy", "explain", "--policy", TEMPLATE, "--call", "-",
               stdin='{"topic": "job.mcp-bridge.read.env", "risk_tags": ["credentials"]}')
    assert json.loads(r.stdout)["rule"] == "deny-secrets-access"


def test_explain_rejects_a_bad_call():
    r = cordum("policy", "explain", "--policy", TEMPLATE, "--call", '{"arguments": []}')
    assert r.returncode == 2 and "invalid --call" in r.stderr


def test_diff_shows_rule_changes_and_moving_decisions(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(TEMPLATE, repo)
    text = (repo / "safety.yaml").read_text()
    (repo / "safety.yaml").write_text(text.replace("decision: require_approval\n    reason: \"Git push", "decision: deny\n    reason: \"Git push"))
    r = cordum("policy", "diff", TEMPLATE, repo)
    assert r.returncode == 0, r.stderr
    assert "~ rule approve-git-push:" in r.stdout
    assert "decision: 'require_approval' -> 'deny'" in r.stdout
    assert "require_approval (approve-git-push) -> deny (approve-git-push)" in r.stdout
    j = json.loads(cordum("policy", "diff", TEMPLATE, repo, "--format", "json").stdout)
    assert j["rules"]["changed"][0]["id"] == "approve-git-push" and j["decisions"]["moved"]
    assert cordum("policy", "diff", TEMPLATE, repo, "--exit-code").returncode == 1
    assert cordum("policy", "diff", TEMPLATE, TEMPLATE, "--exit-code").returncode == 0


def test_init_repo_copies_the_template_and_refuses_a_non_empty_dir(tmp_path):
    dst = tmp_path / "policies"
    r = cordum("init-repo", dst)
    assert r.returncode == 0, r.stderr
    assert (dst / "safety.yaml").read_text() == (TEMPLATE / "safety.yaml").read_text()
    assert (dst / ".github" / "workflows" / "policy.yml").is_file() and (dst / ".gitlab-ci.yml").is_file()
    assert cordum("policy", "test", dst).returncode == 0
    again = cordum("init-repo", dst)
    assert again.returncode == 1 and "not empty" in again.stderr


@pytest.mark.parametrize("argv", [["--help"], ["policy", "--help"]])
def test_help_works(argv):
    assert cordum(*argv).returncode == 0


def test_cli_module_does_not_import_django():
    code = "import sys, cordum.cli, cordum.policy; cordum.cli.build_parser(); print('django' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr


def test_diff_replays_an_evidence_export_through_each_policys_own_tool_map(tmp_path):
    """Recorded calls (`--calls export.jsonl`) move when the candidate maps them differently; outcomes are skipped."""
    repo = tmp_path / "repo"
    shutil.copytree(TEMPLATE, repo)
    text = (repo / "safety.yaml").read_text()
    catch_all = '  - {server: claude-code, tool: [Bash, PowerShell], topic: job.mcp-bridge.shell.exec, target: "{command}"}'
    test_runs = ("  - {server: claude-code, tool: Bash, when: {args: {command: {regex: ['^pytest\\b']}}}, "
                 'topic: job.mcp-bridge.shell.test, target: "{command}"}\n')
    rule = ('  - id: allow-test-runs\n    match: {topics: ["job.mcp-bridge.shell.test"]}\n'
            '    decision: allow\n    reason: "tests are safe"\n\ntools:')
    (repo / "safety.yaml").write_text(text.replace(catch_all, test_runs + catch_all).replace("\ntools:", "\n" + rule, 1))
    recorded = {"record_type": "decision", "decision_id": "d1", "agent": "claude-code-mo", "team": "payments",
                "environment": "dev", "server": "claude-code", "tool": "Bash", "args": {"command": "pytest -q"},
                "topic": "job.mcp-bridge.shell.exec", "risk_tags": [], "decision": "deny", "rule": None}
    outcome = {"record_type": "outcome", "decision_id": "d1", "outcome": "blocked", "server": "", "tool": ""}
    export = tmp_path / "export.jsonl"
    export.write_text(json.dumps(recorded) + "\n" + json.dumps(outcome) + "\n")
    r = cordum("policy", "diff", TEMPLATE / "safety.yaml", repo / "safety.yaml", "--calls", export)
    assert r.returncode == 0, r.stderr
    assert "decisions: 1 of 1 calls move" in r.stdout
    assert "require_approval (approve-shell) -> allow (allow-test-runs)" in r.stdout


def test_coverage_lists_the_client_tools_a_tool_map_misses(tmp_path):
    ok = cordum("policy", "coverage", TEMPLATE, "--client", "claude-code")
    assert ok.returncode == 0 and "unmapped" not in ok.stdout
    policy = tmp_path / "safety.yaml"
    policy.write_text("version: v1\ntools:\n  - {server: claude-code, tool: [Read, Bash], topic: job.mcp-bridge.read.file}\n"
                      "rules:\n  - id: r\n    match: {topics: [job.mcp-bridge.read.file]}\n    decision: allow\n")
    tools = tmp_path / "tools.json"
    tools.write_text('["Read", "Bash", "Write", "Frobnicate"]')
    gaps = cordum("policy", "coverage", policy, "--tools-from", tools, "--format", "json")
    assert gaps.returncode == 1
    assert json.loads(gaps.stdout)["unmapped"] == ["Write", "Frobnicate"]


def test_explain_after_a_label_decides_as_a_later_call_of_that_session():
    call = json.dumps({"server": "claude-code", "tool": "WebFetch", "arguments": {"url": "https://example.com"}})
    plain = json.loads(cordum("policy", "explain", "--policy", TEMPLATE, "--call", call).stdout)
    after = cordum("policy", "explain", "--policy", TEMPLATE, "--call", call, "--after", "secret-read")
    assert after.returncode == 0, after.stderr
    out = json.loads(after.stdout)
    assert plain["decision"] == "allow" and "flow" not in plain
    assert (out["decision"], out["rule"], out["flow"]["label"]) == ("deny", "deny-egress-after-secret-read",
                                                                    "secret-read")
