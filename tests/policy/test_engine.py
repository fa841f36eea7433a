"""Evaluating calls: the brief's scenarios, topic semantics, tool map, argument conditions."""

import textwrap
import threading

import pytest

from cordum.policy import Call, compile_policy, evaluate, load_policy_text


def compiled(text, version="test"):
    result = load_policy_text(textwrap.dedent(text))
    assert result.ok, [str(e) for e in result.errors]
    return compile_policy(result.policy, version)


# -- the brief's scenarios, through the template's tool map --------------------------------------
SCENARIOS = [
    ("file read allowed", {"server": "filesystem", "tool": "read_file", "arguments": {"path": "src/auth/login.ts"}},
     "allow", "allow-code-read"),
    ("file write requires approval",
     {"server": "filesystem", "tool": "write_file", "arguments": {"path": "src/auth/login.ts", "content": "x"},
      "root": "/repo"}, "require_approval", "approve-code-write"),
    ("claude Write requires approval",
     {"server": "claude-code", "tool": "Write", "arguments": {"file_path": "/repo/a.py"}, "root": "/repo"},
     "require_approval", "approve-code-write"),
    ("git push requires approval",
     {"server": "git", "tool": "git_push", "arguments": {"remote": "origin", "branch": "main"}},
     "require_approval", "approve-git-push"),
    ("git force-push requires approval",
     {"server": "git", "tool": "git_push", "arguments": {"remote": "origin", "branch": "main", "force": True}},
     "require_approval", "approve-git-push"),
    ("bash force-push requires approval",
     {"server": "claude-code", "tool": "Bash", "arguments": {"command": "git push --force-with-lease origin main"}},
     "require_approval", "approve-git-push"),
    ("terraform destroy denied",
     {"server": "claude-code", "tool": "Bash", "arguments": {"command": "terraform destroy -auto-approve"}},
     "deny", "deny-infra-destroy"),
    ("kubectl delete denied",
     {"server": "claude-code", "tool": "Bash", "arguments": {"command": "kubectl delete deploy api"}},
     "deny", "deny-infra-destroy"),
    ("reading .env denied although read.* is allowed",
     {"server": "filesystem", "tool": "read_file", "arguments": {"path": ".env"}}, "deny", "deny-secrets-access"),
    ("reading a pem denied", {"server": "claude-code", "tool": "Read", "arguments": {"file_path": "/repo/k/tls.pem"}},
     "deny", "deny-secrets-access"),
]


@pytest.mark.parametrize(("name", "call", "decision", "rule"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_brief_scenarios_through_the_template(template, name, call, decision, rule):
    d = evaluate(template, call)
    assert (d.decision, d.rule) == (decision, rule), d.to_dict()
    assert d.policy_version == "template@test"


@pytest.mark.parametrize(
    ("topic", "tags", "decision", "rule"),
    [
        ("job.mcp-bridge.read.file", [], "allow", "allow-code-read"),
        ("job.mcp-bridge.write.file", ["code-change"], "require_approval", "approve-code-write"),
        ("job.mcp-bridge.git.push", ["deploy"], "require_approval", "approve-git-push"),
        ("job.mcp-bridge.git.force-push", ["deploy"], "require_approval", "approve-git-push"),
        ("job.mcp-bridge.infra.destroy", ["destructive"], "deny", "deny-infra-destroy"),
        ("job.mcp-bridge.aws.rds.destroy", ["infrastructure"], "deny", "deny-infra-destroy"),
        ("job.mcp-bridge.k8s.delete", ["destructive"], "deny", "deny-infra-destroy"),
        ("job.mcp-bridge.read.env", ["credentials"], "deny", "deny-secrets-access"),
        ("job.mcp-bridge.read.secrets", ["credentials"], "deny", "deny-secrets-access"),
        ("job.mcp-bridge.unknown.thing", [], "deny", None),
    ],
)
def test_brief_policy_on_direct_topics(brief, topic, tags, decision, rule):
    d = evaluate(brief, {"topic": topic, "risk_tags": tags})
    assert (d.decision, d.rule) == (decision, rule)


def test_reading_env_collects_both_rules_and_deny_wins(brief):
    d = evaluate(brief, Call(topic="job.mcp-bridge.read.env", risk_tags=("credentials",)))
    assert d.matched == ("allow-code-read", "deny-secrets-access")
    assert d.reason == "Direct secrets access blocked by policy"


def test_decision_fields_for_an_evidence_record(template):
    d = evaluate(template, {"server": "git", "tool": "git_push", "arguments": {"remote": "origin", "branch": "main"}})
    assert d.action == "git.push" and d.target == "origin/main" and d.topic == "job.mcp-bridge.git.push"
    assert d.risk_tags == ("deploy",) and d.is_write is False
    assert d.approval == {"timeout": 900, "on_timeout": "deny", "reviewers": ["role:reviewer"], "allow_self_approval": False,
                          "session_approval": {"max_calls": 25, "max_minutes": 60}}
    out = d.to_dict()
    for key in ("decision", "rule", "matched", "shadow", "reason", "topic", "risk_tags", "target", "policy_version"):
        assert key in out


def test_write_calls_are_flagged_as_writes(template):
    d = evaluate(template, {"server": "git", "tool": "git_commit", "arguments": {"repo_path": "/r", "message": "m"}, "root": "/r"})
    assert d.is_write and d.action == "write.git-commit"


def test_every_glob_of_a_list_must_match_the_whole_path_not_only_the_last_one():
    from cordum.policy.patterns import compile_path_glob

    for patterns, inside, outside in (
        (["**/.env", "**/*.pem"], ["/r/.env", "k/x.pem"], ["/r/.envrc", "k/x.pem.bak"]),  # base-name globs
        (["src/*.py", "docs/*.md"], ["src/a.py", "docs/x.md"], ["src/a.pyc", "src/a.py/x"]),  # one-wildcard globs
        (["a/**/b*c*d.py", "x/**/y*z*w.md"], ["a/q/bXcXd.py"], ["a/q/bXcXd.pyc"]),  # several wildcards
    ):
        match = compile_path_glob(patterns)
        assert all(match(p) for p in inside), (patterns, inside)
        assert not any(match(p) for p in outside), (patterns, outside)


def test_path_globs_compare_case_insensitively_as_macos_and_windows_file_systems_do():
    c = compiled("""\
        version: v1
        defaults: {decision: allow}
        rules:
          - id: secrets
            match: {args: {path: {glob: ["**/.env", "**/*.pem", "/etc/**", "config/Secrets.yaml"]}}}
            decision: deny
        """)
    for path in ("/r/.ENV", "/r/.Env", "keys/SERVER.PEM", "/ETC/passwd", "CONFIG/secrets.YAML", "/r/.env"):
        assert evaluate(c, {"topic": "t", "arguments": {"path": path}}).decision == "deny", path
    for path in ("/r/.envrc", "/r/env", "keys/server.pem.txt", "/etcetera/x"):
        assert evaluate(c, {"topic": "t", "arguments": {"path": path}}).decision == "allow", path


def test_topic_globs_are_case_insensitive_and_star_spans_dots():
    c = compiled("""\
        version: v1
        defaults: {decision: allow}
        rules:
          - id: d
            match: {topics: ["JOB.mcp-bridge.*.destroy", "job.x?", "job.[ab]c"]}
            decision: deny
        """)
    for topic in ("job.mcp-bridge.aws.rds.destroy", "job.MCP-BRIDGE.infra.destroy", "job.x1", "job.ac"):
        assert evaluate(c, {"topic": topic}).decision == "deny", topic
    for topic in ("job.mcp-bridge.destroy", "job.x12", "job.cc", "job.mcp-bridge.infra.destroyed"):
        assert evaluate(c, {"topic": topic}).decision == "allow", topic


def test_unmapped_call_gets_bridge_topic_and_no_tags(brief):
    d = evaluate(brief, {"server": "jira", "tool": "create_issue"})
    assert d.topic == "job.mcp-bridge.jira.create_issue" and d.risk_tags == () and d.rule is None


def test_first_matching_tool_entry_wins_and_target_renders_missing_keys_empty():
    c = compiled("""\
        version: v1
        tools:
          - {server: git, tool: "git_*", topic: job.mcp-bridge.git.any}
          - {server: git, tool: git_push, topic: job.mcp-bridge.git.push, target: "{remote}/{branch}"}
          - {server: "g*", tool: other, topic: job.mcp-bridge.g.other, target: "{remote}/{branch}"}
        rules: []
        """)
    assert evaluate(c, {"server": "git", "tool": "git_push"}).topic == "job.mcp-bridge.git.any"
    assert evaluate(c, {"server": "gh", "tool": "other", "arguments": {"branch": "b"}}).target == "/b"


def test_risk_tags_are_any_of_and_empty_means_no_constraint(brief):
    assert evaluate(brief, {"topic": "job.mcp-bridge.infra.destroy", "risk_tags": ["infrastructure", "x"]}).decision == "deny"
    assert evaluate(brief, {"topic": "job.mcp-bridge.infra.destroy", "risk_tags": ["other"]}).rule is None
    assert evaluate(brief, {"topic": "job.mcp-bridge.read.x", "risk_tags": ["anything"]}).rule == "allow-code-read"


def test_scopes_restrict_rules_to_agents_teams_and_environments():
    c = compiled("""\
        version: v1
        defaults: {decision: allow}
        rules:
          - id: prod-claude
            match: {topics: ["*"], agents: ["claude-code*"], teams: [payments], environments: ["prod*"]}
            decision: deny
        """)
    base = {"topic": "job.x", "agent": "claude-code-7", "team": "payments", "environment": "prod-eu"}
    assert evaluate(c, base).decision == "deny"
    for key, other in (("agent", "cursor"), ("team", "web"), ("environment", "dev")):
        assert evaluate(c, {**base, key: other}).decision == "allow"


def test_shadow_rules_are_reported_but_never_applied():
    c = compiled("""\
        version: v1
        defaults: {decision: allow}
        rules:
          - id: try-deny
            match: {topics: ["job.x"]}
            decision: deny
            mode: shadow
        """)
    d = evaluate(c, {"topic": "job.x"})
    assert d.decision == "allow" and d.rule is None
    assert d.shadow == ({"rule": "try-deny", "decision": "deny"},)


def test_rule_approval_overrides_merge_over_defaults():
    c = compiled("""\
        version: v1
        defaults: {approval: {timeout: 10m, reviewers: ["role:reviewer"]}}
        rules:
          - id: a
            match: {topics: ["job.x"]}
            decision: require_approval
            approval: {timeout: 1h, allow_self_approval: true}
        """)
    assert evaluate(c, {"topic": "job.x"}).approval == {
        "timeout": 3600, "on_timeout": "deny", "reviewers": ["role:reviewer"], "allow_self_approval": True,
    }


ARGS_POLICY = """\
    version: v1
    defaults: {decision: allow}
    rules:
      - id: glob
        match: {topics: [job.glob], args: {path: {glob: ["**/.env", "src/**/*.key"]}}}
        decision: deny
      - id: regex
        match: {topics: [job.regex], args: {command: {regex: ['^git\\s+push\\b']}}}
        decision: deny
      - id: equals-in
        match: {topics: [job.eq], args: {force: true, env: [prod, staging]}}
        decision: deny
      - id: numeric
        match: {topics: [job.num], args: {size: {gt: 10, lte: 100}}}
        decision: deny
      - id: prefix
        match: {topics: [job.prefix], args: {url: {prefix: ["https://prod."]}}}
        decision: deny
      - id: outside
        match: {topics: [job.outside], args: {"path|file_path": {outside: ["{root}", /tmp]}}}
        decision: deny
      - id: under
        match: {topics: [job.under], args: {path: {under: ["{root}/secrets"]}}}
        decision: deny
      - id: exists
        match: {topics: [job.exists], args: {sudo: {exists: true}, opts.recursive: {equals: true}}}
        decision: deny
      - id: negations
        match: {topics: [job.not], args: {path: {not_glob: ["docs/**"]}, cmd: {not_regex: ["^ls"], not_in: [pwd]}}}
        decision: deny
"""


@pytest.mark.parametrize(
    ("topic", "args", "root", "denied"),
    [
        ("job.glob", {"path": ".env"}, "", True),
        ("job.glob", {"path": "/a/b/.env"}, "", True),
        ("job.glob", {"path": "a/../.env"}, "", True),
        ("job.glob", {"path": "src/x/y/z.key"}, "", True),
        ("job.glob", {"path": "src/z.key"}, "", True),
        ("job.glob", {"path": "lib/z.key"}, "", False),
        ("job.glob", {"path": ".envrc"}, "", False),
        ("job.glob", {"path": 42}, "", False),
        ("job.glob", {}, "", False),
        ("job.regex", {"command": "git  push origin"}, "", True),
        ("job.regex", {"command": "echo git push"}, "", False),
        ("job.eq", {"force": True, "env": "prod"}, "", True),
        ("job.eq", {"force": 1, "env": "prod"}, "", False),
        ("job.eq", {"force": True, "env": "dev"}, "", False),
        ("job.num", {"size": 11}, "", True),
        ("job.num", {"size": 100.0}, "", True),
        ("job.num", {"size": 10}, "", False),
        ("job.num", {"size": "50"}, "", False),
        ("job.prefix", {"url": "https://prod.example.com/x"}, "", True),
        ("job.prefix", {"url": "https://dev.example.com"}, "", False),
        ("job.outside", {"path": "/etc/passwd"}, "/repo", True),
        ("job.outside", {"path": "src/a.py"}, "/repo", False),
        ("job.outside", {"path": "../other/a.py"}, "/repo", True),
        ("job.outside", {"path": "/repo/../etc"}, "/repo", True),
        ("job.outside", {"path": "/repository/x"}, "/repo", True),
        ("job.outside", {"path": "/tmp/scratch"}, "/repo", False),
        ("job.outside", {"file_path": "/etc/x"}, "/repo", True),
        ("job.outside", {"path": "b.py", "cwd": "/elsewhere"}, "/repo", True),
        ("job.outside", {"path": "b.py", "cwd": "sub"}, "/repo", False),
        ("job.outside", {"path": "/abs/path"}, "", True),
        ("job.outside", {"path": "rel/path"}, "", False),
        ("job.under", {"path": "secrets/k"}, "/repo", True),
        ("job.under", {"path": "secretsx/k"}, "/repo", False),
        ("job.exists", {"sudo": False, "opts": {"recursive": True}}, "", True),
        ("job.exists", {"opts": {"recursive": True}}, "", False),
        ("job.not", {"path": "src/a", "cmd": "rm x"}, "", True),
        ("job.not", {"path": "docs/a", "cmd": "rm x"}, "", False),
        ("job.not", {"path": "src/a", "cmd": "ls -la"}, "", False),
        ("job.not", {"path": "src/a", "cmd": "pwd"}, "", False),
    ],
)
def test_argument_conditions(topic, args, root, denied):
    c = _args_policy()
    d = evaluate(c, Call(topic=topic, arguments=args, root=root))
    assert (d.decision == "deny") == denied, d.to_dict()


_ARGS = {}


def _args_policy():
    if "c" not in _ARGS:
        _ARGS["c"] = compiled(ARGS_POLICY)
    return _ARGS["c"]


def test_list_arguments_match_when_any_element_matches():
    c = _args_policy()
    assert evaluate(c, Call(topic="job.glob", arguments={"path": ["a.py", "x/.env"]})).decision == "deny"
    assert evaluate(c, Call(topic="job.glob", arguments={"path": ["a.py", "b.py"]})).decision == "allow"


def test_call_from_dict_validates_and_accepts_the_cli_shape():
    c = Call.from_dict({"server": "git", "tool": "git_push", "arguments": {"a": 1}, "agent": "claude-code",
                        "team": "payments", "environment": "prod", "session_id": "ignored"})
    assert (c.server, c.agent, c.team, c.environment, c.arguments) == ("git", "claude-code", "payments", "prod", {"a": 1})
    assert Call.from_dict({"topic": "job.x", "risk_tags": ["a"]}).risk_tags == ("a",)
    for bad in ({"server": "git", "tool": "t", "arguments": []}, {"topic": 5}, {}, []):
        with pytest.raises(ValueError):
            Call.from_dict(bad)


def test_policy_version_is_the_compiled_version(brief_policy):
    assert evaluate(compile_policy(brief_policy, "v9@abc"), {"topic": "job.x"}).policy_version == "v9@abc"


def test_evaluation_is_deterministic_across_threads(template):
    calls = [s[1] for s in SCENARIOS] * 50
    expected = [evaluate(template, c).to_dict() for c in calls]
    results = {}

    def run(i):
        results[i] = [evaluate(template, c).to_dict() for c in calls]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results.values())


def test_caches_do_not_leak_between_arguments(template):
    # Same server/tool/topic key, different arguments: the argument-dependent result must differ.
    ok = evaluate(template, {"server": "filesystem", "tool": "read_file", "arguments": {"path": "a.py"}})
    bad = evaluate(template, {"server": "filesystem", "tool": "read_file", "arguments": {"path": ".env"}})
    again = evaluate(template, {"server": "filesystem", "tool": "read_file", "arguments": {"path": "a.py"}})
    assert (ok.decision, bad.decision, again.decision) == ("allow", "deny", "allow")
