"""Untrusted policy text cannot exhaust memory or the stack: every limit is named at file:line:col."""

import json

from cordum.policy import load_policy_file, load_policy_text
from cordum.policy.document import (
    MAX_ALIASES,
    MAX_DOCUMENT_BYTES,
    MAX_EXPANDED_SIZE,
    MAX_NESTING_DEPTH,
    MAX_RULES,
)
from cordum.policy.testing import load_cases

RULE = "version: v1\nrules:\n  - id: a\n    decision: deny\n    match:\n"


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb inside a real rule's argument conditions: 10**levels 'lol's once expanded."""
    lines = [RULE + "      args:", "        x0: {equals: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]}"]
    for i in range(1, levels):
        refs = ", ".join([f"*l{i - 1}"] * 10)
        lines.append(f"        x{i}: {{equals: &l{i} [{refs}]}}")
    return "\n".join(lines) + "\n"


def the_error(text: str, filename: str = "safety.yaml"):
    result = load_policy_text(text, filename=filename)
    assert not result.ok and result.policy is None
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return result.errors[0]


def test_deeply_nested_yaml_is_an_error_at_the_level_that_breaks_the_limit_not_a_recursion_error():
    text = RULE + "      args: {x: {equals: " + "[" * 5000 + "]" * 5000 + "}}\n"
    error = the_error(text)
    assert "MAX_NESTING_DEPTH" in error.message and f"{MAX_NESTING_DEPTH} levels" in error.message
    # Level 1 is the root mapping, then rules, the rule, match, args, x: the list brackets start at column 26.
    assert (error.line, error.col) == (6, 26 + MAX_NESTING_DEPTH - 7 + 1)


def test_deep_block_style_nesting_is_refused_too():
    text = "version: v1\nx:\n" + "".join("  " * i + "- \n" for i in range(1, 400))
    error = the_error(text)
    assert "MAX_NESTING_DEPTH" in error.message


def test_nesting_up_to_the_limit_still_loads():
    depth_left = MAX_NESTING_DEPTH - 6  # root, rules, rule, match, args, condition
    text = RULE + "      args: {x: {equals: " + "[" * depth_left + "]" * depth_left + "}}\n"
    assert load_policy_text(text).ok


def test_billion_laughs_is_refused_at_the_alias_that_passes_the_expansion_limit():
    error = the_error(billion_laughs())
    assert "MAX_EXPANDED_SIZE" in error.message and f"{MAX_EXPANDED_SIZE:,}" in error.message
    assert error.line == 7 + 5 and error.message.startswith("alias '*l4'")  # x5 = ten x4s of 10**4 lols passes 4 MiB


def test_a_small_alias_chain_still_loads_and_serialises_to_its_expanded_size():
    result = load_policy_text(billion_laughs(levels=3))
    assert result.ok, [str(e) for e in result.errors]
    assert len(json.dumps(result.policy.to_dict())) < 20_000


def test_too_many_aliases_is_refused_at_the_first_alias_over_the_limit():
    refs = ", ".join(["&a 1"] + ["*a"] * (MAX_ALIASES + 5))
    error = the_error(f"version: v1\nx: [{refs}]\n")
    assert "MAX_ALIASES" in error.message
    assert (error.line, error.col) == (2, 5 + len("&a 1, ") + len("*a, ") * MAX_ALIASES)


def test_recursive_alias_is_refused():
    error = the_error("version: v1\nrules: &a [*a]\n")
    assert "recursive" in error.message and (error.line, error.col) == (2, 12)


def test_oversized_document_is_refused_before_parsing():
    text = "version: v1\nrules: []\n# " + "x" * MAX_DOCUMENT_BYTES + "\n"
    error = the_error(text)
    assert "MAX_DOCUMENT_BYTES" in error.message and f"{MAX_DOCUMENT_BYTES:,} bytes" in error.message
    assert (error.line, error.col) == (1, 1)


def test_oversized_policy_file_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "safety.yaml"
    path.write_text("version: v1\nrules: []\n# " + "x" * (3 * MAX_DOCUMENT_BYTES) + "\n")
    result = load_policy_file(path)
    assert not result.ok and "MAX_DOCUMENT_BYTES" in result.errors[0].message
    assert f"{path.stat().st_size:,} bytes" in result.errors[0].message


def test_more_rules_than_the_limit_is_one_error_at_the_rules_list():
    rules = "".join(f"  - {{id: r{i}, match: {{}}, decision: allow}}\n" for i in range(MAX_RULES + 1))
    error = the_error("version: v1\nrules:\n" + rules)
    assert "MAX_RULES" in error.message and f"{MAX_RULES + 1:,} rules" in error.message
    assert (error.line, error.col) == (3, 3)


def test_policy_test_files_are_bounded_the_same_way(tmp_path):
    path = tmp_path / "cases.yaml"
    path.write_text("cases: " + "[" * 3000 + "]" * 3000 + "\n")
    cases, errors = load_cases(str(path))
    assert cases == [] and "MAX_NESTING_DEPTH" in errors[0].message
