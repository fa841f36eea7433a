"""Input limits of the policy loader (docs/limits.md): each hostile document is rejected with an error
naming the limit and its position, before it is expanded or recursed into."""

from cordum.policy.loader import (
    MAX_POLICY_BYTES,
    MAX_RULES,
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    load_policy_text,
)

HEAD = "version: v1\ndefaults: {decision: deny}\n"


def _only_error(text):
    res = load_policy_text(text, filename="safety.yaml")
    assert res.policy is None
    assert len(res.errors) == 1, res.errors
    return res.errors[0]


def test_deeply_nested_yaml_is_an_error_not_a_recursion_error():
    text = HEAD + "rules: " + "[" * 5000 + "]" * 5000 + "\n"
    err = _only_error(text)
    assert f"nested too deeply: over the limit of {MAX_YAML_DEPTH} levels" in err.message
    assert (err.file, err.line) == ("safety.yaml", 3)


def test_billion_laughs_is_rejected_before_expansion():
    lines = [HEAD.rstrip("\n"), 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append("rules: []")
    err = _only_error("\n".join(lines) + "\n")
    assert f"YAML expands to too many nodes (aliases): over the limit of {MAX_YAML_NODES}" in err.message
    assert err.line > 3


def test_too_many_aliases_is_rejected_naming_the_alias_limit():
    refs = ",".join(["*x"] * (MAX_YAML_ALIASES + 1))
    err = _only_error(HEAD + f"x: &x lol\ny: [{refs}]\nrules: []\n")
    assert f"too many YAML aliases: over the limit of {MAX_YAML_ALIASES}" in err.message
    assert err.line == 4


def test_oversized_document_is_rejected_naming_the_byte_limit():
    text = HEAD + "rules: []\n# " + "x" * MAX_POLICY_BYTES + "\n"
    err = _only_error(text)
    assert f"over the limit of {MAX_POLICY_BYTES} bytes" in err.message


def test_too_many_rules_is_rejected_at_the_first_rule_over_the_limit():
    text = HEAD + "rules:\n" + "".join(f"  - {{id: r{i}}}\n" for i in range(MAX_RULES + 1))
    err = _only_error(text)
    assert f"too many rules: over the limit of {MAX_RULES}" in err.message
    assert err.line == 3 + MAX_RULES + 1


def test_policy_within_the_limits_still_loads_with_anchors_and_nesting():
    text = HEAD + (
        "tools:\n"
        "  - {server: fs, tool: read_*, topic: t.read, when: {args: {path: {glob: &secret ['**/.env']}}}}\n"
        "  - {server: fs, tool: write_*, topic: t.write, when: {args: {path: {glob: *secret}}}}\n"
        "rules:\n"
        "  - {id: deny-read, match: {topics: ['t.read']}, decision: deny}\n"
    )
    res = load_policy_text(text)
    assert res.errors == [], res.errors
    assert [r.id for r in res.policy.rules] == ["deny-read"]


def test_a_deeply_nested_test_case_file_is_reported_not_a_crash(tmp_path):
    from cordum.policy.testing import load_cases

    path = tmp_path / "deep.yaml"
    path.write_text("cases: " + "[" * 5000 + "]" * 5000 + "\n")
    cases, errors = load_cases(str(path))
    assert cases == [] and "nested too deeply" in errors[0].message
