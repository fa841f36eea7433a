"""Gates in cordum.yaml (validated with file:line:col, judged against a simulation report) and a semantic diff
whose every entry names the line it is at."""

from cordum.policy import diff_policies, load_policy_text
from cordum.policy.diff import locate_diff
from cordum.policy.gates import evaluate_gates, load_gates_text

BASE = """\
version: v1
defaults:
  decision: deny
rules:
  - id: allow-reads
    match:
      topics: ["job.mcp-bridge.read.*"]
    decision: allow
  - id: approve-git-push
    match:
      topics: ["job.mcp-bridge.git.push"]
    decision: require_approval
"""

# approve-git-push tightened to deny and moved first, a deny rule added, a session limit set.
CHANGED = """\
version: v1
defaults:
  decision: deny
rules:
  - id: approve-git-push
    match:
      topics: ["job.mcp-bridge.git.push"]
    decision: deny
  - id: allow-reads
    match:
      topics: ["job.mcp-bridge.read.*"]
    decision: allow
  - id: deny-env
    match:
      topics: ["job.mcp-bridge.read.env"]
    decision: deny
limits:
  session: {max_calls: 100}
"""


def _located():
    old, new = load_policy_text(BASE).policy, load_policy_text(CHANGED).policy
    diff = diff_policies(old, new).to_dict()
    return locate_diff(diff, old_policy=old.to_dict(), new_policy=new.to_dict(), old_text=BASE, new_text=CHANGED)


def test_every_semantic_change_names_the_line_it_is_at_in_the_new_file():
    located = _located()
    rules = located["rules"]
    assert [(r["id"], r["at"]["line"]) for r in rules["added"]] == [("deny-env", 13)]
    changed = rules["changed"][0]
    assert changed["id"] == "approve-git-push" and changed["at"]["line"] == 5
    assert [(c["field"], c["before"], c["after"], c["at"]["line"]) for c in changed["changes"]] == [
        ("decision", "require_approval", "deny", 8)]
    assert rules["reordered"] and rules["moved"] and rules["moved_at"][0]["at"]["side"] == "new"
    assert [(c["field"], c["after"], c["at"]["line"]) for c in located["limits"]] == [("session.max_calls", 100, 18)]


def test_a_removed_rule_points_at_its_line_in_the_live_file():
    old, new = load_policy_text(CHANGED).policy, load_policy_text(BASE).policy
    located = locate_diff(diff_policies(old, new).to_dict(), old_policy=old.to_dict(), new_policy=new.to_dict(),
                          old_text=CHANGED, new_text=BASE)
    assert [(r["id"], r["at"]) for r in located["rules"]["removed"]] == [
        ("deny-env", {"side": "old", "file": "safety.yaml", "line": 13})]


def test_gates_file_errors_name_file_line_and_column():
    result = load_gates_text(
        "version: v1\ngates:\n  max_newly_denid: 1\n  max_newly_denied: 200%\n  protected_topics: ['a[']\n"
        "  max_new_approvals_per_day: lots\n")
    assert result.gates is None
    assert [str(e) for e in result.errors] == [
        "cordum.yaml:3:3: unknown key 'max_newly_denid' in gates (did you mean 'max_newly_denied'?)",
        "cordum.yaml:4:21: gates.max_newly_denied: a percentage is at most 100%, got 200%",
        "cordum.yaml:5:22: gates.protected_topics: bad glob 'a[': unterminated character class starting at "
        "position 2",
        "cordum.yaml:6:30: gates.max_new_approvals_per_day: expected a number of calls (e.g. 20) or a percentage "
        "(e.g. 0.5%), got 'lots'",
    ]


def test_no_gates_file_means_no_gates_and_no_error():
    assert load_gates_text(None).gates.empty and not load_gates_text(None).errors
    assert load_gates_text("version: v1\n").gates.empty


def _report(*, total=1000, newly_denied=0, newly_approval=0, before=1.0, after=1.0, topics=()):
    return {"summary": {"total_calls": total, "newly_denied": newly_denied, "newly_require_approval": newly_approval},
            "approval_load": {"avg_per_day_before": before, "avg_per_day_after": after},
            "changed_by_topic": [{"topic": t, "before": "allow", "after": "deny", "count": n} for t, n in topics]}


GATES = """\
version: v1
gates:
  max_newly_denied: 0.5%
  max_newly_require_approval: 10
  max_new_approvals_per_day: 20
  protected_topics: ["job.mcp-bridge.git.*"]
"""


def test_each_gate_passes_or_fails_on_its_own_number():
    gates = load_gates_text(GATES).gates
    verdicts = {v["gate"]: v for v in evaluate_gates(gates, _report(newly_denied=5, newly_approval=11,
                                                                    before=2.0, after=22.5))}
    assert verdicts["max_newly_denied"]["passed"]  # 5 of 1000 is 0.5%: at the limit passes
    assert not verdicts["max_newly_require_approval"]["passed"]
    assert not verdicts["max_new_approvals_per_day"]["passed"] and verdicts["max_new_approvals_per_day"]["actual"] == 20.5
    assert verdicts["protected_topics"]["passed"]
    assert verdicts["max_newly_denied"]["line"] == 3


def test_a_percentage_gate_fails_just_past_its_share_and_a_protected_topic_fails_on_any_moved_call():
    gates = load_gates_text(GATES).gates
    verdicts = {v["gate"]: v for v in evaluate_gates(gates, _report(newly_denied=6, topics=[
        ("job.mcp-bridge.read.file", 3), ("job.mcp-bridge.git.push", 1)]))}
    assert not verdicts["max_newly_denied"]["passed"]
    assert not verdicts["protected_topics"]["passed"]
    assert "job.mcp-bridge.git.push" in verdicts["protected_topics"]["detail"]
    assert "read.file" not in verdicts["protected_topics"]["detail"]


def test_policy_lint_of_a_repository_validates_its_gates_file_too(tmp_path):
    import shutil
    import subprocess
    import sys

    from .conftest import ROOT, TEMPLATE

    def lint(path):
        return subprocess.run([sys.executable, "-m", "cordum", "policy", "lint", str(path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    assert (TEMPLATE / "cordum.yaml").is_file()
    ok = lint(TEMPLATE)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    repo = tmp_path / "repo"
    shutil.copytree(TEMPLATE, repo)
    (repo / "cordum.yaml").write_text("version: v1\ngates:\n  max_newly_denied: lots\n")
    bad = lint(repo)
    assert bad.returncode == 1
    assert f"{repo / 'cordum.yaml'}:3:21: gates.max_newly_denied: expected a number" in bad.stdout


def test_the_template_gates_are_valid_and_state_each_kind_of_gate():
    from .conftest import TEMPLATE

    gates = load_gates_text((TEMPLATE / "cordum.yaml").read_text()).gates
    assert gates.max_newly_denied is not None and gates.max_newly_denied.percent
    assert gates.max_new_approvals_per_day == 20 and gates.protected_topics
