"""Gates: the blast radius a policy change may have, stated in the policy repository's `cordum.yaml`.

```yaml
version: v1
gates:
  max_newly_denied: 0.5%          # of the replayed calls; a plain number is a count of calls
  max_newly_require_approval: 50  # same forms
  max_new_approvals_per_day: 20   # forecast approvals per day after the change minus before
  protected_topics: ["job.mcp-bridge.git.push", "job.mcp-bridge.*.destroy"]  # no recorded call on these may move
```

`load_gates_text` validates (issues with file:line:col, as the policy loader does); `evaluate_gates` judges a
simulation report (cordum.policy.simulate) against them: one verdict per gate, pass or fail with the numbers.
Pure Python, no Django.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .loader import PolicyIssue, yaml_limit_issue
from .patterns import compile_name_glob, glob_error

__all__ = ["GATES_FILENAME", "Gates", "GatesResult", "Threshold", "evaluate_gates", "load_gates_text"]

GATES_FILENAME = "cordum.yaml"
MAX_GATES_BYTES = 65_536
_TOP_KEYS = ("version", "gates")
_GATE_KEYS = ("max_newly_denied", "max_newly_require_approval", "max_new_approvals_per_day", "protected_topics")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True)
class Threshold:
    """At most `value` calls, or `value` percent of the replayed calls when `percent`."""

    value: float
    percent: bool = False

    def limit_for(self, total: int) -> float:
        return total * self.value / 100.0 if self.percent else self.value

    def __str__(self) -> str:
        number = f"{self.value:g}"
        return f"{number}%" if self.percent else number


@dataclass(frozen=True)
class Gates:
    max_newly_denied: Threshold | None = None
    max_newly_require_approval: Threshold | None = None
    max_new_approvals_per_day: float | None = None
    protected_topics: tuple[str, ...] = ()
    lines: dict[str, int] = field(default_factory=dict, compare=False)  # gate name -> line in the file

    @property
    def empty(self) -> bool:
        return (self.max_newly_denied is None and self.max_newly_require_approval is None
                and self.max_new_approvals_per_day is None and not self.protected_topics)


@dataclass(frozen=True)
class GatesResult:
    gates: Gates | None
    errors: list[PolicyIssue] = field(default_factory=list)


class _Reader:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.errors: list[PolicyIssue] = []

    def error(self, node: Node | None, message: str) -> None:
        line, col = (node.start_mark.line + 1, node.start_mark.column + 1) if node is not None else (1, 1)
        self.errors.append(PolicyIssue(self.filename, line, col, message))

    def mapping(self, node: Node, where: str, allowed: tuple[str, ...]) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            self.error(node, f"{where} must be a mapping")
            return {}
        out: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else None
            if name is None or name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else f"; expected one of: {', '.join(allowed)}"
                self.error(key, f"unknown key '{name}' in {where}{hint}")
            elif name in out:
                self.error(key, f"duplicate key '{name}' in {where}")
            else:
                out[name] = (key, value)
        return out

    def threshold(self, node: Node, name: str) -> Threshold | None:
        text = node.value if isinstance(node, ScalarNode) else None
        match = _PERCENT.match(text) if isinstance(text, str) else None
        if match:
            value = float(match.group(1))
            if value > 100:
                self.error(node, f"gates.{name}: a percentage is at most 100%, got {text}")
                return None
            return Threshold(value, percent=True)
        number = self.number(node, name)
        return Threshold(number) if number is not None else None

    def number(self, node: Node, name: str) -> float | None:
        if isinstance(node, ScalarNode) and node.tag.endswith((":int", ":float")):
            try:
                value = float(node.value)
            except ValueError:
                value = -1.0
            if value >= 0:
                return value
        self.error(node, f"gates.{name}: expected a number of calls (e.g. 20) or a percentage (e.g. 0.5%), "
                         f"got {getattr(node, 'value', 'a ' + type(node).__name__)!r}")
        return None

    def topics(self, node: Node) -> tuple[str, ...]:
        if not isinstance(node, SequenceNode):
            self.error(node, "gates.protected_topics: expected a list of topic globs")
            return ()
        out = []
        for item in node.value:
            problem = glob_error(item.value) if isinstance(item, ScalarNode) else "must be a string"
            if problem:
                self.error(item, f"gates.protected_topics: bad glob {getattr(item, 'value', '')!r}: {problem}")
            else:
                out.append(item.value)
        return tuple(out)


def _compose(text: str, filename: str) -> tuple[Node | None, PolicyIssue | None]:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_GATES_BYTES:
        return None, PolicyIssue(filename, 1, 1, f"{filename} is {size} bytes, over the limit of {MAX_GATES_BYTES}")
    try:
        over = yaml_limit_issue(text, filename)
        if over is not None:
            return None, over
        return yaml.compose(text, Loader=yaml.SafeLoader), None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, PolicyIssue(filename, line, col, f"YAML syntax error: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        return None, PolicyIssue(filename, 1, 1, f"YAML error: {exc}")


def load_gates_text(text: str | None, filename: str = GATES_FILENAME) -> GatesResult:
    """Validate `cordum.yaml`. No file (None) or no `gates:` section: no gates, no error."""
    if text is None:
        return GatesResult(Gates())
    root, problem = _compose(text, filename)
    if problem is not None:
        return GatesResult(None, [problem])
    if root is None:
        return GatesResult(Gates())
    reader = _Reader(filename)
    top = reader.mapping(root, filename, _TOP_KEYS)
    if "version" in top and top["version"][1].value != "v1":
        reader.error(top["version"][1], f"version: only 'v1' is known, got {top['version'][1].value!r}")
    found = reader.mapping(top["gates"][1], "gates", _GATE_KEYS) if "gates" in top else {}
    values: dict[str, Any] = {}
    for name, (_key, value) in found.items():
        if name == "protected_topics":
            values[name] = reader.topics(value)
        elif name == "max_new_approvals_per_day":
            values[name] = reader.number(value, name)
        else:
            values[name] = reader.threshold(value, name)
    if reader.errors:
        return GatesResult(None, reader.errors)
    lines = {name: key.start_mark.line + 1 for name, (key, _value) in found.items()}
    return GatesResult(Gates(**values, lines=lines))


def _verdict(gate: str, gates: Gates, *, limit: str, actual: Any, passed: bool, detail: str) -> dict:
    return {"gate": gate, "limit": limit, "actual": actual, "passed": passed, "detail": detail,
            "line": gates.lines.get(gate)}


def _protected(gates: Gates, report: dict) -> dict:
    matches = compile_name_glob(gates.protected_topics)
    moved = [t for t in report.get("changed_by_topic", []) if matches(t["topic"] or "")]
    count = sum(t["count"] for t in moved)
    topics = sorted({t["topic"] for t in moved})
    detail = (f"{count} recorded calls on protected topics change decision ({', '.join(topics)})" if moved
              else "no recorded call on a protected topic changes decision")
    return _verdict("protected_topics", gates, limit=", ".join(gates.protected_topics), actual=count,
                    passed=not moved, detail=detail)


def evaluate_gates(gates: Gates, report: dict) -> list[dict]:
    """One verdict per stated gate: {"gate", "limit", "actual", "passed", "detail", "line"}."""
    summary = report["summary"]
    total = summary["total_calls"]
    out = []
    for name, key, what in (("max_newly_denied", "newly_denied", "newly denied"),
                            ("max_newly_require_approval", "newly_require_approval", "newly need approval")):
        threshold: Threshold | None = getattr(gates, name)
        if threshold is None:
            continue
        actual = summary[key]
        share = f" ({100.0 * actual / total:.2f}% of {total})" if total else ""
        out.append(_verdict(name, gates, limit=str(threshold), actual=actual,
                            passed=actual <= threshold.limit_for(total),
                            detail=f"{actual} calls {what}{share}; at most {threshold} allowed"))
    if gates.max_new_approvals_per_day is not None:
        load = report["approval_load"]
        added = round(load["avg_per_day_after"] - load["avg_per_day_before"], 2)
        out.append(_verdict("max_new_approvals_per_day", gates, limit=f"{gates.max_new_approvals_per_day:g}",
                            actual=added, passed=added <= gates.max_new_approvals_per_day,
                            detail=f"approvals per day {load['avg_per_day_before']} → {load['avg_per_day_after']} "
                                   f"({added:+g}); at most {gates.max_new_approvals_per_day:g} more allowed"))
    if gates.protected_topics:
        out.append(_protected(gates, report))
    return out
