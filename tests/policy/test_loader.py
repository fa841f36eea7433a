"""Loading and validating safety.yaml v1: positions, every error kind, warnings, round trips."""

import json
import textwrap

import pytest

from cordum.policy import load_policy_text, policy_from_dict

from .conftest import BRIEF, BRIEF_POLICY, TEMPLATE


def load(text):
    return load_policy_text(textwrap.dedent(text), filename="p.yaml")


def only_error(text):
    result = load(text)
    assert not result.ok
    assert result.policy is None
    assert len(result.errors) >= 1, result
    return result.errors[0]


def test_brief_example_policy_loads_unchanged():
    result = load_policy_text(BRIEF_POLICY)
    assert result.ok and not result.warnings
    assert [r.id for r in result.policy.rules] == [
        "allow-code-read", "approve-code-write", "approve-git-push", "deny-infra-destroy", "deny-secrets-access",
    ]


@pytest.mark.skipif(not BRIEF.exists(), reason="the product brief lives beside the repository, not in it")
def test_brief_policy_fixture_is_the_brief_text_verbatim():
    text = BRIEF.read_text()
    start = text.index("# safety.yaml - coding agent governance\nversion: v1")
    end = text.index("File reads and git log pass through")
    assert text[start:end].strip() == BRIEF_POLICY.strip()


def test_template_contains_the_brief_rules_verbatim():
    rules_block = BRIEF_POLICY.split("rules:\n", 1)[1]
    assert rules_block.strip() in (TEMPLATE / "safety.yaml").read_text()


def test_defaults_fill_in_when_absent(brief_policy):
    assert brief_policy.defaults.decision == "deny"
    assert brief_policy.defaults.approval.timeout == 900
    assert brief_policy.defaults.approval.on_timeout == "deny"
    assert brief_policy.rules[0].match.risk_tags == ()


def test_rules_keep_their_line_numbers(brief_policy):
    assert [r.line for r in brief_policy.rules] == [4, 11, 18, 25, 32]


def test_yaml_syntax_error_reports_line_and_column():
    e = only_error("version: v1\nrules:\n  - id: a\n    match: {topics: [x\n")
    assert e.line == 5 and "YAML syntax error" in e.message
    assert str(e).startswith("p.yaml:5:")


def test_unknown_key_suggests_the_closest_key():
    e = only_error("""\
        version: v1
        rules:
          - id: a
            match:
              tpoics: ["job.x"]
            decision: allow
        """)
    assert (e.line, e.col) == (5, 7)
    assert e.message == "unknown key 'tpoics' in match of rule 'a' (did you mean 'topics'?)"
    assert str(e) == "p.yaml:5:7: unknown key 'tpoics' in match of rule 'a' (did you mean 'topics'?)"


def test_unknown_top_level_key_lists_the_expected_keys_when_nothing_is_close():
    e = only_error("version: v1\nzzz: 1\n")
    assert e.line == 2
    assert "unknown key 'zzz' in the policy; expected one of: version, defaults, tools, rules" in e.message


def test_bad_decision_names_the_choices_and_a_suggestion():
    e = only_error("""\
        version: v1
        rules:
          - id: a
            match: {topics: ["job.x"]}
            decision: alow
        """)
    assert e.line == 5
    assert e.message == "invalid decision 'alow': expected allow, require_approval or deny (did you mean 'allow'?)"


def test_bad_default_decision_is_reported():
    e = only_error("version: v1\ndefaults:\n  decision: maybe\n")
    assert e.line == 3 and e.message.startswith("invalid decision 'maybe'")


def test_duplicate_rule_id_points_at_both_definitions():
    e = only_error("""\
        version: v1
        rules:
          - id: a
            match: {topics: ["job.x"]}
            decision: allow
          - id: a
            match: {topics: ["job.y"]}
            decision: deny
        """)
    assert e.line == 6
    assert e.message == "duplicate rule id 'a' (first defined at line 3)"


def test_bad_topic_glob_is_reported_at_the_pattern():
    e = only_error("""\
        version: v1
        rules:
          - id: a
            match:
              topics:
                - "job.ok"
                - "job.[abc"
            decision: deny
        """)
    assert e.line == 7
    assert e.message == "invalid glob 'job.[abc' in match.topics: unterminated character class starting at position 5"


def test_bad_argument_glob_is_reported():
    e = only_error("""\
        version: v1
        rules:
          - id: a
            match:
              args: {path: {glob: ["[z-a]"]}}
            decision: deny
        """)
    assert e.line == 5
    assert e.message == "invalid glob '[z-a]' for argument 'path': invalid range 'z-a' in character class"


def test_bad_regex_is_reported_with_the_engine_message():
    e = only_error("""\
        version: v1
        tools:
          - server: claude-code
            tool: Bash
            when: {args: {command: {regex: ["git (push"]}}}
            topic: job.mcp-bridge.git.push
        """)
    assert e.line == 5
    assert e.message.startswith("invalid regex 'git (push' for argument 'command': missing ), unterminated subpattern")


def test_regex_features_outside_re2_are_rejected():
    e = only_error("""\
        version: v1
        rules:
          - id: a
            match: {args: {command: {regex: ["(a)\\\\1"]}}}
            decision: deny
        """)
    assert e.line == 4 and "backreferences are not supported" in e.message


def test_wrong_type_for_a_list_says_what_was_found():
    e = only_error("""\
        version: v1
        rules:
          - id: a
            match:
              risk_tags: {deploy: true}
            decision: deny
        """)
    assert e.line == 5
    assert e.message == "'risk_tags' must be a list of strings, got a mapping"


def test_wrong_type_for_a_number_and_a_boolean():
    result = load("""\
        version: v1
        defaults:
          approval: {allow_self_approval: "no"}
        limits:
          session: {max_calls: lots}
        """)
    messages = {(e.line, e.message) for e in result.errors}
    assert (3, "'allow_self_approval' must be true or false, got a string") in messages
    assert (5, "'max_calls' must be a whole number, got a string") in messages


def test_missing_required_fields_are_reported_at_the_rule():
    result = load("""\
        version: v1
        rules:
          - id: a
            match: {topics: ["job.x"]}
        """)
    assert [(e.line, e.message) for e in result.errors] == [(3, "rule 'a' is missing required key 'decision'")]


def test_missing_version_and_missing_topic_in_the_tool_map():
    result = load("""\
        tools:
          - server: git
            tool: git_status
        """)
    messages = [(e.line, e.message) for e in result.errors]
    assert (2, "tool map entry tools[0] is missing required key 'topic'") in messages
    assert (1, "the policy is missing required key 'version'") in messages


def test_unsupported_version_is_rejected():
    e = only_error("version: v2\n")
    assert e.line == 1 and e.message == "unsupported version 'v2': this Cordum understands version: v1"


def test_bad_duration_is_reported():
    e = only_error("version: v1\ndefaults:\n  approval: {timeout: soon}\n")
    assert e.line == 3 and e.message.startswith("invalid duration 'soon' for 'timeout'")


def test_bad_mode_is_reported():
    e = only_error("""\
        version: v1
        rules:
          - id: a
            match: {topics: ["job.x"]}
            decision: deny
            mode: shdow
        """)
    assert e.line == 6 and e.message == "invalid mode 'shdow': expected enforce or shadow (did you mean 'shadow'?)"


def test_duplicate_yaml_key_is_an_error():
    e = only_error("version: v1\nrules: []\nrules: []\n")
    assert e.line == 3 and e.message == "duplicate key 'rules' in the policy (first at line 2)"


def test_tool_map_topic_must_be_concrete():
    e = only_error("version: v1\ntools:\n  - {server: git, topic: 'job.mcp-bridge.*'}\n")
    assert e.line == 3 and "must be a concrete topic, not a glob" in e.message


def test_unknown_argument_operator_suggests_one():
    e = only_error("""\
        version: v1
        rules:
          - id: a
            match: {args: {path: {globb: "*.py"}}}
            decision: deny
        """)
    assert e.line == 4 and "unknown key 'globb'" in e.message and "did you mean 'glob'" in e.message


def test_numeric_operator_needs_a_number():
    e = only_error("""\
        version: v1
        rules:
          - id: a
            match: {args: {size: {gt: big}}}
            decision: deny
        """)
    assert e.line == 4 and e.message == "'gt' on argument 'size' must be a number, got a string"


def test_empty_file_is_an_error():
    e = only_error("")
    assert (e.line, e.col) == (1, 1) and e.message.startswith("empty policy")


def test_rule_shadowed_by_a_broader_deny_is_an_error():
    result = load("""\
        version: v1
        rules:
          - id: deny-all-writes
            match: {topics: ["job.mcp-bridge.write.*"]}
            decision: deny
          - id: approve-file-writes
            match: {topics: ["job.mcp-bridge.write.file"], risk_tags: [code-change]}
            decision: require_approval
        """)
    assert not result.ok
    [e] = result.errors
    assert e.severity == "error" and e.line == 6
    assert e.message == (
        "rule 'approve-file-writes' is unreachable: deny rule 'deny-all-writes' (line 3) matches every call "
        "it matches and always wins over it; narrow or remove one of them (a deny always wins)"
    )


def test_narrower_deny_or_argument_conditions_are_not_unreachable():
    result = load("""\
        version: v1
        rules:
          - id: deny-prod-writes
            match: {topics: ["job.mcp-bridge.write.*"], environments: [prod]}
            decision: deny
          - id: deny-outside
            match: {topics: ["job.mcp-bridge.write.*"], args: {path: {outside: ["{root}"]}}}
            decision: deny
          - id: approve-writes
            match: {topics: ["job.mcp-bridge.write.*"]}
            decision: require_approval
        """)
    assert result.ok and result.warnings == []


def test_later_duplicate_deny_is_reported_as_never_deciding():
    result = load("""\
        version: v1
        rules:
          - id: first
            match: {topics: ["*"]}
            decision: deny
          - id: second
            match: {topics: ["job.x"]}
            decision: deny
        """)
    assert [e.line for e in result.errors] == [6]
    assert "comes first, so it decides instead" in result.errors[0].message


def test_to_dict_round_trips_exactly(template_policy, brief_policy):
    for policy in (template_policy, brief_policy):
        d = policy.to_dict()
        assert policy_from_dict(d) == policy
        assert policy_from_dict(json.loads(json.dumps(d))) == policy
        assert policy_from_dict(d).to_dict() == d


def test_canonical_form_is_itself_a_valid_policy(template_policy):
    again = load_policy_text(json.dumps(template_policy.to_dict()))
    assert again.ok, again.errors
    assert again.policy == template_policy


def test_canonical_form_has_stable_key_order(brief_policy):
    d = brief_policy.to_dict()
    assert list(d) == ["version", "defaults", "tools", "rules", "limits", "evidence"]
    assert list(d["rules"][0]) == ["id", "match", "decision", "reason", "mode"]


@pytest.mark.parametrize("bad", [None, 42, "- a\n- b\n", "version: v1\nrules: {a: 1}\n"])
def test_bad_input_never_raises(bad):
    result = load_policy_text(bad) if bad is not None else load_policy_text(None)
    assert not result.ok and result.errors
