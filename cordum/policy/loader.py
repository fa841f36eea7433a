"""Load and validate safety.yaml v1: YAML nodes (with positions) -> typed Policy, or located issues.

Never raises on bad input: every problem becomes a `PolicyIssue` with file, line and column.
"""

from __future__ import annotations

import difflib
import os
import re
import string
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .model import (
    ARG_OPS,
    DECISIONS,
    DEFAULT_MAX_VALUE_BYTES,
    DEFAULT_REDACT,
    LIST_OPS,
    MAX_APPROVALS_REQUIRED,
    MODES,
    NUMERIC_OPS,
    ON_SECRET,
    ON_TIMEOUT,
    ON_TOOL_DRIFT,
    Approval,
    ArgCondition,
    Defaults,
    EvidenceSettings,
    LabelRule,
    Limits,
    Match,
    Policy,
    RateLimits,
    ResultSettings,
    Rule,
    RuleLimits,
    SessionApproval,
    SessionLimits,
    ToolMapping,
    ToolsLock,
)
from .patterns import glob_error, has_wildcard, regex_error
from .reachability import covers, unreachable_rules

__all__ = [
    "MAX_POLICY_BYTES",
    "MAX_RULES",
    "MAX_YAML_ALIASES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "LoadResult",
    "PolicyIssue",
    "load_policy_file",
    "load_policy_text",
    "parse_duration",
]

# Input limits (docs/limits.md). Checked on the YAML event stream before any node tree is built, so a
# hostile commit (billion laughs, thousands of nested brackets) is rejected before it costs memory or
# blows the interpreter's recursion limit.
MAX_POLICY_BYTES = 1_048_576  # size of safety.yaml in UTF-8 bytes
MAX_YAML_DEPTH = 64  # nested mappings/sequences; a real policy needs about 8
MAX_YAML_ALIASES = 256  # '*alias' references in one document
MAX_YAML_NODES = 1_000_000  # nodes the document holds once every alias is expanded (billion laughs)
MAX_RULES = 20_000  # entries under 'rules'
_LABEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@dataclass(frozen=True)
class PolicyIssue:
    file: str
    line: int
    col: int
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col, "message": self.message, "severity": self.severity}


@dataclass(frozen=True)
class LoadResult:
    policy: Policy | None
    errors: list[PolicyIssue] = field(default_factory=list)
    warnings: list[PolicyIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.policy is not None and not self.errors


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> int | None:
    """Seconds from an int (seconds) or "90s", "15m", "2h", "1h30m", "1d"; None if malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    s = value.strip().lower()
    if s.isdigit():
        return int(s)
    total, num = 0, ""
    for ch in s:
        if ch.isdigit():
            num += ch
        elif ch in _DURATION_UNITS and num:
            total += int(num) * _DURATION_UNITS[ch]
            num = ""
        else:
            return None
    if num:
        return None
    return total


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    return {"str": "a string", "int": "a number", "float": "a number", "bool": "a boolean", "null": "null"}.get(
        tag, f"a {tag}"
    )


class _Validator:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.errors: list[PolicyIssue] = []
        self.warnings: list[PolicyIssue] = []
        self._constructor = yaml.constructor.SafeConstructor()
        self._after_nodes: dict[str, list[Node]] = {}  # rule id -> the YAML nodes of its `match.after` labels

    # -- reporting ---------------------------------------------------------------------------
    def _issue(self, node: Node | None, message: str, severity: str) -> PolicyIssue:
        if node is None:
            return PolicyIssue(self.filename, 1, 1, message, severity)
        m = node.start_mark
        return PolicyIssue(self.filename, m.line + 1, m.column + 1, message, severity)

    def error(self, node: Node | None, message: str) -> None:
        self.errors.append(self._issue(node, message, "error"))

    def warn(self, node: Node | None, message: str) -> None:
        self.warnings.append(self._issue(node, message, "warning"))

    # -- structure helpers -------------------------------------------------------------------
    def value(self, node: Node) -> Any:
        self._constructor.constructed_objects = {}
        self._constructor.recursive_objects = {}
        return self._constructor.construct_object(node, deep=True)

    def mapping(
        self, node: Node, where: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
    ) -> dict[str, tuple[Node, Node]] | None:
        if not isinstance(node, MappingNode):
            self.error(node, f"{where} must be a mapping, got {_kind(node)}")
            return None
        out: dict[str, tuple[Node, Node]] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                self.error(knode, f"keys in {where} must be strings")
                continue
            key = str(self.value(knode))
            if key in out:
                self.error(knode, f"duplicate key '{key}' in {where} (first at line {out[key][0].start_mark.line + 1})")
                continue
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else f"; expected one of: {', '.join(allowed)}"
                self.error(knode, f"unknown key '{key}' in {where}{hint}")
                continue
            out[key] = (knode, vnode)
        for key in required:
            if key not in out:
                self.error(node, f"{where} is missing required key '{key}'")
        return out

    def string(self, node: Node, what: str, *, allow_empty: bool = False) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            if isinstance(node, ScalarNode) and node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
                self.error(node, f"'{what}' must be a string, got a number (quote it)")
            else:
                self.error(node, f"'{what}' must be a string, got {_kind(node)}")
            return None
        value = self.value(node)
        if not value and not allow_empty:
            self.error(node, f"'{what}' must not be empty")
            return None
        return value

    def string_list(self, node: Node, what: str, *, allow_scalar: bool = True) -> list[tuple[str, Node]] | None:
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if allow_scalar and isinstance(node, ScalarNode):
            s = self.string(node, what)
            return None if s is None else [(s, node)]
        if not isinstance(node, SequenceNode):
            self.error(node, f"'{what}' must be a list of strings, got {_kind(node)}")
            return None
        out = []
        ok = True
        for item in node.value:
            if not isinstance(item, ScalarNode) or item.tag != "tag:yaml.org,2002:str":
                self.error(item, f"'{what}' must be a list of strings, got {_kind(item)} in the list")
                ok = False
                continue
            s = self.value(item)
            if not s:
                self.error(item, f"'{what}' must not contain empty strings")
                ok = False
                continue
            out.append((s, item))
        return out if ok else None

    def globs(self, node: Node, what: str) -> tuple[str, ...] | None:
        items = self.string_list(node, what)
        if items is None:
            return None
        ok = True
        for s, n in items:
            problem = glob_error(s)
            if problem:
                self.error(n, f"invalid glob '{s}' in {what}: {problem}")
                ok = False
        return tuple(s for s, _ in items) if ok else None

    def boolean(self, node: Node, what: str) -> bool | None:
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:bool":
            self.error(node, f"'{what}' must be true or false, got {_kind(node)}")
            return None
        return self.value(node)

    def integer(self, node: Node, what: str, *, minimum: int = 0, nullable: bool = False) -> int | None | bool:
        """Returns the int, None for an allowed null, or False on error."""
        if nullable and isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return None
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:int":
            self.error(node, f"'{what}' must be a whole number, got {_kind(node)}")
            return False
        value = self.value(node)
        if value < minimum:
            self.error(node, f"'{what}' must be at least {minimum}, got {value}")
            return False
        return value

    def duration(self, node: Node, what: str, *, nullable: bool = False) -> int | None | bool:
        if nullable and isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return None
        if not isinstance(node, ScalarNode):
            self.error(node, f"'{what}' must be a duration like 15m, 2h or 90s, got {_kind(node)}")
            return False
        raw = self.value(node)
        secs = parse_duration(raw)
        if secs is None:
            self.error(node, f"invalid duration '{raw}' for '{what}': use seconds or a number with s, m, h or d (e.g. 15m, 2h)")
            return False
        return secs

    def choice(self, node: Node, what: str, choices: tuple[str, ...]) -> str | None:
        if not isinstance(node, ScalarNode):
            self.error(node, f"'{what}' must be one of {', '.join(choices)}, got {_kind(node)}")
            return None
        raw = self.value(node)
        if isinstance(raw, str) and raw in choices:
            return raw
        close = difflib.get_close_matches(str(raw), choices, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        label = "decision" if choices == DECISIONS else what
        self.error(node, f"invalid {label} '{raw}': expected {', '.join(choices[:-1])} or {choices[-1]}{hint}")
        return None

    # -- sections ----------------------------------------------------------------------------
    def approval(self, node: Node, where: str, *, partial: bool) -> Approval | None:
        m = self.mapping(node, where, ("timeout", "on_timeout", "reviewers", "allow_self_approval",
                                       "session_approval", "approvals_required"))
        if m is None:
            return None
        base = Approval(None, None, None, None) if partial else Approval()
        timeout, on_timeout, reviewers, self_ok = base.timeout, base.on_timeout, base.reviewers, base.allow_self_approval
        if "timeout" in m:
            t = self.duration(m["timeout"][1], "timeout")
            if t is not False:
                if t == 0:
                    self.error(m["timeout"][1], "'timeout' must be longer than 0 seconds")
                else:
                    timeout = t
        if "on_timeout" in m:
            on_timeout = self.choice(m["on_timeout"][1], "on_timeout", ON_TIMEOUT) or on_timeout
        if "reviewers" in m:
            items = self.string_list(m["reviewers"][1], "reviewers")
            if items is not None:
                reviewers = tuple(s for s, _ in items)
        if "allow_self_approval" in m:
            b = self.boolean(m["allow_self_approval"][1], "allow_self_approval")
            if b is not None:
                self_ok = b
        session = self.session_approval(m["session_approval"][1]) if "session_approval" in m else None
        required = None
        if "approvals_required" in m:
            n = self.integer(m["approvals_required"][1], "approvals_required", minimum=1)
            if n is not False and n is not None:
                if n > MAX_APPROVALS_REQUIRED:
                    self.error(m["approvals_required"][1], f"'approvals_required' must be at most "
                               f"{MAX_APPROVALS_REQUIRED}, got {n}")
                else:
                    required = n
                    if n > 1 and self_ok:
                        self.warn(m["approvals_required"][0], f"{where}: with approvals_required {n} the agent's "
                                  "owner never counts as one of the reviewers, so allow_self_approval has no effect")
        return Approval(timeout=timeout, on_timeout=on_timeout, reviewers=reviewers, allow_self_approval=self_ok,
                        session_approval=session, approvals_required=required)

    def session_approval(self, node: Node) -> SessionApproval | bool | None:
        """`session_approval: false` (only "approve once"), or `{max_calls: N, max_minutes: M}` (at least one):
        the bound within which "approve for this session" lets matching calls through. None on error."""
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:bool":
            if self.value(node):
                self.error(node, "'session_approval' needs a bound: {max_calls: N, max_minutes: M} (either or "
                           "both), or false to forbid approving for a session")
                return None
            return False
        if not isinstance(node, MappingNode):
            self.error(node, f"'session_approval' must be false or a mapping {{max_calls: N, max_minutes: M}}, "
                       f"got {_kind(node)}")
            return None
        m = self.mapping(node, "session_approval", ("max_calls", "max_minutes"))
        if m is None:
            return None
        if not node.value:
            self.error(node, "'session_approval' needs max_calls, max_minutes or both")
            return None
        calls = self.integer(m["max_calls"][1], "max_calls", minimum=1) if "max_calls" in m else None
        minutes = self.integer(m["max_minutes"][1], "max_minutes", minimum=1) if "max_minutes" in m else None
        if calls is False or minutes is False or not m:
            return None
        return SessionApproval(max_calls=calls, max_minutes=minutes)

    def defaults(self, node: Node) -> Defaults:
        m = self.mapping(node, "defaults", ("decision", "approval"))
        if m is None:
            return Defaults()
        decision = "deny"
        if "decision" in m:
            decision = self.choice(m["decision"][1], "decision", DECISIONS) or "deny"
        approval = Approval()
        if "approval" in m:
            approval = self.approval(m["approval"][1], "defaults.approval", partial=False) or Approval()
        return Defaults(decision=decision, approval=approval)

    def arg_conditions(self, node: Node, where: str) -> tuple[ArgCondition, ...] | None:
        if not isinstance(node, MappingNode):
            self.error(node, f"{where} must be a mapping of argument name to condition, got {_kind(node)}")
            return None
        out = []
        ok = True
        seen: dict[str, Node] = {}
        for knode, vnode in node.value:
            name = self.value(knode) if isinstance(knode, ScalarNode) else None
            if not isinstance(name, str) or not name:
                self.error(knode, f"argument names in {where} must be non-empty strings")
                ok = False
                continue
            if name in seen:
                self.error(knode, f"duplicate key '{name}' in {where} (first at line {seen[name].start_mark.line + 1})")
                ok = False
                continue
            seen[name] = knode
            cond = self.arg_condition(name, vnode, where)
            if cond is None:
                ok = False
            else:
                out.append(cond)
        return tuple(out) if ok else None

    def arg_condition(self, name: str, node: Node, where: str) -> ArgCondition | None:  # noqa: C901 - checks each operator of a condition at its YAML node, to report file:line:col
        pos = node.start_mark
        if isinstance(node, ScalarNode):
            return ArgCondition(name, (("equals", self.value(node)),), pos.line + 1, pos.column + 1)
        if isinstance(node, SequenceNode):
            return ArgCondition(name, (("in", tuple(self.value(node))),), pos.line + 1, pos.column + 1)
        m = self.mapping(node, f"the condition on argument '{name}'", ARG_OPS)
        if m is None:
            return None
        if not m and not node.value:
            self.error(node, f"the condition on argument '{name}' in {where} has no operators; use one of: {', '.join(ARG_OPS)}")
            return None
        ops = []
        ok = True
        for op in ARG_OPS:
            if op not in m:
                continue
            vnode = m[op][1]
            what = f"{op}' on argument '{name}"
            if op == "exists":
                b = self.boolean(vnode, what)
                if b is None:
                    ok = False
                else:
                    ops.append((op, b))
            elif op == "equals":
                ops.append((op, self.value(vnode)))
            elif op in ("in", "not_in"):
                if isinstance(vnode, MappingNode):
                    self.error(vnode, f"'{what}' must be a list of values, got a mapping")
                    ok = False
                    continue
                val = self.value(vnode)
                ops.append((op, tuple(val) if isinstance(val, list) else (val,)))
            elif op in NUMERIC_OPS:
                val = self.value(vnode) if isinstance(vnode, ScalarNode) else None
                if isinstance(val, bool) or not isinstance(val, int | float):
                    self.error(vnode, f"'{what}' must be a number, got {_kind(vnode)}")
                    ok = False
                    continue
                ops.append((op, val))
            elif op in LIST_OPS:
                items = self.string_list(vnode, what)
                if items is None:
                    ok = False
                    continue
                for s, n in items:
                    if op in ("glob", "not_glob"):
                        problem = glob_error(s)
                        if problem:
                            self.error(n, f"invalid glob '{s}' for argument '{name}': {problem}")
                            ok = False
                    elif op in ("regex", "not_regex"):
                        problem = regex_error(s)
                        if problem:
                            self.error(n, f"invalid regex '{s}' for argument '{name}': {problem}")
                            ok = False
                ops.append((op, tuple(s for s, _ in items)))
        if not ok:
            return None
        return ArgCondition(name, tuple(ops), pos.line + 1, pos.column + 1)

    def tool_mapping(self, node: Node, index: int) -> ToolMapping | None:  # noqa: C901 - checks each key of a tool map entry at its YAML node, to report file:line:col
        where = f"tools[{index}]"
        m = self.mapping(
            node, f"tool map entry {where}", ("server", "tool", "when", "topic", "risk_tags", "target", "write"), ("topic",)
        )
        if m is None:
            return None
        ok = "topic" in m
        server: tuple[str, ...] = ("*",)
        tool: tuple[str, ...] = ("*",)
        if "server" in m:
            g = self.globs(m["server"][1], "server")
            ok = ok and g is not None and bool(g)
            server = g or server
        if "tool" in m:
            g = self.globs(m["tool"][1], "tool")
            ok = ok and g is not None and bool(g)
            tool = g or tool
        when: tuple[ArgCondition, ...] = ()
        if "when" in m:
            wm = self.mapping(m["when"][1], f"{where}.when", ("args",))
            if wm is None:
                ok = False
            elif "args" in wm:
                conds = self.arg_conditions(wm["args"][1], f"{where}.when.args")
                if conds is None:
                    ok = False
                else:
                    when = conds
        topic = ""
        if "topic" in m:
            t = self.string(m["topic"][1], "topic")
            if t is None:
                ok = False
            elif has_wildcard(t):
                self.error(m["topic"][1], f"tool map topic '{t}' must be a concrete topic, not a glob")
                ok = False
            else:
                topic = t
        tags: tuple[str, ...] = ()
        if "risk_tags" in m:
            items = self.string_list(m["risk_tags"][1], "risk_tags")
            if items is None:
                ok = False
            else:
                tags = tuple(s for s, _ in items)
        target = ""
        if "target" in m:
            t = self.string(m["target"][1], "target", allow_empty=True)
            if t is None:
                ok = False
            else:
                try:
                    for _lit, fname, spec, conv in string.Formatter().parse(t):
                        if fname is not None and (not fname or spec or conv):
                            raise ValueError("use plain {argument} fields without format specs")
                    target = t
                except ValueError as exc:
                    self.error(m["target"][1], f"invalid target template '{t}': {exc}")
                    ok = False
        write = False
        if "write" in m:
            b = self.boolean(m["write"][1], "write")
            if b is None:
                ok = False
            else:
                write = b
        if not ok:
            return None
        p = node.start_mark
        return ToolMapping(
            topic=topic, server=server, tool=tool, when=when, risk_tags=tags, target=target, write=write,
            line=p.line + 1, col=p.column + 1,
        )

    def label_names(self, node: Node, what: str) -> tuple[str, ...] | None:
        items = self.string_list(node, what)
        if items is None:
            return None
        ok = True
        for s, n in items:
            if not _LABEL_NAME.fullmatch(s):
                self.error(n, f"invalid label '{s}' in {what}: use letters, digits, '-', '_', '.' or ':' "
                              "(e.g. secret-read)")
                ok = False
        return tuple(dict.fromkeys(s for s, _ in items)) if ok else None

    def match(self, node: Node, rid: str, *, where: str | None = None, flows: bool = True) -> Match | None:
        keys = ("topics", "risk_tags", "agents", "teams", "environments", "args") + (("after",) if flows else ())
        m = self.mapping(node, where or f"match of rule '{rid}'", keys)
        if m is None:
            return None
        ok = True
        after: tuple[str, ...] = ()
        if "after" in m:
            names = self.label_names(m["after"][1], "match.after")
            if names is None:
                ok = False
            elif not names:
                self.error(m["after"][1], "'match.after' must name at least one label (or leave it out)")
                ok = False
            else:
                after = names
                self._after_nodes[rid] = [n for n in (m["after"][1].value if isinstance(m["after"][1], SequenceNode)
                                                      else [m["after"][1]])]
        vals: dict[str, tuple[str, ...]] = {}
        for key in ("topics", "agents", "teams", "environments"):
            if key in m:
                g = self.globs(m[key][1], f"match.{key}")
                if g is None:
                    ok = False
                else:
                    vals[key] = g
        if "risk_tags" in m:
            items = self.string_list(m["risk_tags"][1], "risk_tags")
            if items is None:
                ok = False
            else:
                vals["risk_tags"] = tuple(s for s, _ in items)
        args: tuple[ArgCondition, ...] = ()
        if "args" in m:
            conds = self.arg_conditions(m["args"][1], f"match.args of rule '{rid}'")
            if conds is None:
                ok = False
            else:
                args = conds
        if not ok:
            return None
        return Match(args=args, after=after, **vals)

    def rule(self, node: Node, index: int, seen_ids: dict[str, int]) -> Rule | None:  # noqa: C901 - checks each key of a rule at its YAML node, to report file:line:col
        allowed = ("id", "description", "match", "decision", "reason", "mode", "approval", "limits")
        if not isinstance(node, MappingNode):
            self.error(node, f"rules[{index}] must be a mapping, got {_kind(node)}")
            return None
        id_node = next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == "id"), None)
        rid = f"rules[{index}]"
        if id_node is not None and isinstance(id_node, ScalarNode) and id_node.value:
            rid = str(id_node.value)
        m = self.mapping(node, f"rule '{rid}'", allowed, ("id", "match", "decision"))
        if m is None:
            return None
        ok = all(k in m for k in ("id", "match", "decision"))
        if "id" in m:
            s = self.string(m["id"][1], "id")
            if s is None:
                ok = False
            elif s in seen_ids:
                self.error(m["id"][1], f"duplicate rule id '{s}' (first defined at line {seen_ids[s]})")
                ok = False
            else:
                seen_ids[s] = m["id"][1].start_mark.line + 1
        match = None
        if "match" in m:
            match = self.match(m["match"][1], rid)
            ok = ok and match is not None
        decision = None
        if "decision" in m:
            decision = self.choice(m["decision"][1], "decision", DECISIONS)
            ok = ok and decision is not None
        reason = ""
        if "reason" in m:
            r = self.string(m["reason"][1], "reason", allow_empty=True)
            ok = ok and r is not None
            reason = r or ""
        description = ""
        if "description" in m:
            r = self.string(m["description"][1], "description", allow_empty=True)
            ok = ok and r is not None
            description = r or ""
        mode = "enforce"
        if "mode" in m:
            c = self.choice(m["mode"][1], "mode", MODES)
            ok = ok and c is not None
            mode = c or mode
        approval = None
        if "approval" in m:
            approval = self.approval(m["approval"][1], f"approval of rule '{rid}'", partial=True)
            ok = ok and approval is not None
            if decision is not None and decision != "require_approval":
                self.warn(m["approval"][0], f"rule '{rid}' sets approval settings but its decision is {decision}; they are ignored")
        limits = None
        if "limits" in m:
            lm = self.mapping(m["limits"][1], f"limits of rule '{rid}'", ("max_calls", "per_minute"))
            if lm is None:
                ok = False
            else:
                mc = self.integer(lm["max_calls"][1], "max_calls", minimum=1) if "max_calls" in lm else None
                pm = self.integer(lm["per_minute"][1], "per_minute", minimum=1) if "per_minute" in lm else None
                if mc is False or pm is False:
                    ok = False
                else:
                    limits = RuleLimits(max_calls=mc, per_minute=pm)
        if not ok:
            return None
        p = node.start_mark
        return Rule(
            id=self.value(m["id"][1]), decision=decision, match=match, reason=reason, mode=mode,
            description=description, approval=approval, limits=limits, line=p.line + 1, col=p.column + 1,
        )

    def limits(self, node: Node) -> Limits:
        m = self.mapping(node, "limits", ("session", "rate"))
        if m is None:
            return Limits()
        session, rate = SessionLimits(), RateLimits()
        if "session" in m:
            sm = self.mapping(m["session"][1], "limits.session", ("max_calls", "max_duration", "max_writes"))
            if sm is not None:
                mc = self.integer(sm["max_calls"][1], "max_calls", minimum=1, nullable=True) if "max_calls" in sm else None
                md = self.duration(sm["max_duration"][1], "max_duration", nullable=True) if "max_duration" in sm else None
                mw = self.integer(sm["max_writes"][1], "max_writes", minimum=0, nullable=True) if "max_writes" in sm else None
                session = SessionLimits(
                    max_calls=None if mc is False else mc,
                    max_duration=None if md is False else md,
                    max_writes=None if mw is False else mw,
                )
        if "rate" in m:
            rm = self.mapping(m["rate"][1], "limits.rate", ("per_minute",))
            if rm is not None and "per_minute" in rm:
                pm = self.integer(rm["per_minute"][1], "per_minute", minimum=1, nullable=True)
                rate = RateLimits(per_minute=None if pm is False else pm)
        return Limits(session=session, rate=rate)

    def evidence(self, node: Node) -> EvidenceSettings:
        m = self.mapping(node, "evidence", ("redact", "max_value_bytes", "redact_secret_values"))
        if m is None:
            return EvidenceSettings()
        redact = DEFAULT_REDACT
        if "redact" in m:
            g = self.globs(m["redact"][1], "evidence.redact")
            if g is not None:
                redact = g
        mvb = DEFAULT_MAX_VALUE_BYTES
        if "max_value_bytes" in m:
            v = self.integer(m["max_value_bytes"][1], "max_value_bytes", minimum=16)
            if v is not False and v is not None:
                mvb = v
        scan = True
        if "redact_secret_values" in m:
            b = self.boolean(m["redact_secret_values"][1], "redact_secret_values")
            scan = True if b is None else b
        return EvidenceSettings(redact=redact, max_value_bytes=mvb, redact_secret_values=scan)

    def results(self, node: Node) -> ResultSettings:
        m = self.mapping(node, "results", ("on_secret", "patterns"))
        if m is None:
            return ResultSettings()
        on_secret = "mask"
        if "on_secret" in m:
            on_secret = self.choice(m["on_secret"][1], "results.on_secret", ON_SECRET) or on_secret
        patterns: list[tuple[str, str]] = []
        if "patterns" in m:
            pnode = m["patterns"][1]
            if not isinstance(pnode, SequenceNode):
                self.error(pnode, f"'results.patterns' must be a list of {{name, regex}}, got {_kind(pnode)}")
            else:
                for i, item in enumerate(pnode.value):
                    pm = self.mapping(item, f"results.patterns[{i}]", ("name", "regex"), ("name", "regex"))
                    if not pm or "name" not in pm or "regex" not in pm:
                        continue
                    name = self.string(pm["name"][1], "name")
                    regex = self.string(pm["regex"][1], "regex")
                    if regex is not None:
                        problem = regex_error(regex)
                        if problem:
                            self.error(pm["regex"][1], f"invalid regex '{regex}' in results.patterns[{i}]: {problem}")
                            regex = None
                    if name is not None and regex is not None:
                        patterns.append((name, regex))
        return ResultSettings(on_secret=on_secret, patterns=tuple(patterns))

    def pinning(self, m: dict[str, tuple[Node, Node]]) -> tuple[str, ToolsLock | None]:
        """`on_tool_drift`, and `tools_lock`: the form a bundle carries (a repository keeps it in tools.lock)."""
        on_tool_drift = "deny"
        if "on_tool_drift" in m:
            on_tool_drift = self.choice(m["on_tool_drift"][1], "on_tool_drift", ON_TOOL_DRIFT) or on_tool_drift
        tools_lock = None
        if "tools_lock" in m:
            from .toollock import validate_lock

            tools_lock = validate_lock(self, m["tools_lock"][1], "tools_lock")
        return on_tool_drift, tools_lock

    def label_rule(self, node: Node, index: int) -> LabelRule | None:
        where = f"labels[{index}]"
        m = self.mapping(node, f"label entry {where}", ("label", "description", "match"), ("label", "match"))
        if m is None or "label" not in m or "match" not in m:
            return None
        names = self.label_names(m["label"][1], "label")
        if names is not None and len(names) != 1:
            self.error(m["label"][1], f"'label' of {where} must be one label name")
            names = None
        description = ""
        if "description" in m:
            description = self.string(m["description"][1], "description", allow_empty=True) or ""
        mnode = m["match"][1]
        if isinstance(mnode, MappingNode) and any(isinstance(k, ScalarNode) and k.value == "after" for k, _ in mnode.value):
            self.error(next(k for k, _ in mnode.value if isinstance(k, ScalarNode) and k.value == "after"),
                       f"a label entry ({where}) cannot use 'after': labels are set by what a call is; "
                       "conditions on the session's history belong on rules")
            return None
        match = self.match(mnode, where, where=f"match of label entry {where}", flows=False)
        if names is None or match is None:
            return None
        p = node.start_mark
        return LabelRule(label=names[0], match=match, description=description, line=p.line + 1, col=p.column + 1)

    def labels(self, node: Node) -> tuple[LabelRule, ...]:
        if isinstance(node, ScalarNode) and node.tag.endswith(":null"):
            return ()
        if not isinstance(node, SequenceNode):
            self.error(node, f"'labels' must be a list of label entries ({{label, match}}), got {_kind(node)}")
            return ()
        out = []
        for i, item in enumerate(node.value):
            entry = self.label_rule(item, i)
            if entry is not None:
                out.append(entry)
        return tuple(out)

    def policy(self, root: Node) -> Policy | None:
        m = self.mapping(root, "the policy", ("version", "defaults", "tools", "rules", "labels", "limits", "evidence",
                                              "results", "on_tool_drift", "tools_lock"), ("version",))
        if m is None:
            return None
        version = "v1"
        if "version" in m:
            vnode = m["version"][1]
            raw = self.value(vnode) if isinstance(vnode, ScalarNode) else None
            if raw != "v1":
                self.error(vnode, f"unsupported version '{raw}': this Cordum understands version: v1")
        defaults = self.defaults(m["defaults"][1]) if "defaults" in m else Defaults()
        tools: list[ToolMapping] = []
        if "tools" in m:
            tnode = m["tools"][1]
            if isinstance(tnode, SequenceNode):
                for i, item in enumerate(tnode.value):
                    t = self.tool_mapping(item, i)
                    if t is not None:
                        tools.append(t)
            elif not (isinstance(tnode, ScalarNode) and tnode.tag.endswith(":null")):
                self.error(tnode, f"'tools' must be a list of tool map entries, got {_kind(tnode)}")
        rules: list[Rule] = []
        if "rules" in m:
            rnode = m["rules"][1]
            seen: dict[str, int] = {}
            if isinstance(rnode, SequenceNode):
                for i, item in enumerate(rnode.value):
                    r = self.rule(item, i, seen)
                    if r is not None:
                        rules.append(r)
            elif not (isinstance(rnode, ScalarNode) and rnode.tag.endswith(":null")):
                self.error(rnode, f"'rules' must be a list of rules, got {_kind(rnode)}")
        limits = self.limits(m["limits"][1]) if "limits" in m else Limits()
        evidence = self.evidence(m["evidence"][1]) if "evidence" in m else EvidenceSettings()
        results = self.results(m["results"][1]) if "results" in m else ResultSettings()
        labels = self.labels(m["labels"][1]) if "labels" in m else ()
        on_tool_drift, tools_lock = self.pinning(m)
        policy = Policy(
            version=version, defaults=defaults, tools=tuple(tools), rules=tuple(rules), limits=limits, evidence=evidence,
            results=results, labels=labels, on_tool_drift=on_tool_drift, tools_lock=tools_lock,
        )
        self.unreachable(policy)
        self.unreachable_flows(policy)
        return policy

    # -- validation: session labels no call can set, conditions no session can meet ----------------
    def unreachable_flows(self, policy: Policy) -> None:
        """A label is set only by a call that runs, so a `labels` entry every call of which a deny rule (one
        without `after`) denies never sets its label; a rule whose `after` names only labels that nothing sets
        can never match (an error, like an unreachable rule); one naming some such labels is a warning, and so
        is a label that no rule's `after` uses."""
        always_denied = [r for r in policy.rules if r.mode == "enforce" and r.decision == "deny" and not r.match.after]
        settable: set[str] = set()
        defined: set[str] = set()
        for entry in policy.labels:
            defined.add(entry.label)
            blocker = next((d for d in always_denied if covers(d.match, entry.match)), None)
            if blocker is None:
                settable.add(entry.label)
            else:
                self.warnings.append(PolicyIssue(
                    self.filename, entry.line or 1, entry.col or 1,
                    f"label entry for '{entry.label}' never sets it: deny rule '{blocker.id}' (line {blocker.line}) "
                    "denies every call it matches, and a label is set only by a call that runs", "warning"))
        used: set[str] = set()
        for r in policy.rules:
            if not r.match.after:
                continue
            used.update(r.match.after)
            nodes = {str(n.value): n for n in self._after_nodes.get(r.id, ()) if isinstance(n, ScalarNode)}
            dead = [name for name in r.match.after if name not in settable]
            for name in dead:
                why = ("every call its 'labels' entries match is denied" if name in defined
                       else "no entry under 'labels' sets it")
                known = f" (labels set: {', '.join(sorted(settable))})" if settable else " (no label can be set)"
                severity = "error" if len(dead) == len(r.match.after) else "warning"
                effect = "so the rule can never match" if severity == "error" else "so that condition never holds"
                issue = self._issue(nodes.get(name), f"rule '{r.id}' waits for label '{name}' after an earlier call, "
                                                     f"but {why}, {effect}{known}", severity)
                if nodes.get(name) is None:
                    issue = PolicyIssue(self.filename, r.line or 1, r.col or 1, issue.message, severity)
                (self.errors if severity == "error" else self.warnings).append(issue)
        for entry in policy.labels:
            if entry.label not in used:
                used.add(entry.label)  # one warning per label
                self.warnings.append(PolicyIssue(
                    self.filename, entry.line or 1, entry.col or 1,
                    f"label '{entry.label}' is set but no rule's 'match.after' uses it", "warning"))

    # -- validation: rules that can never decide ---------------------------------------------
    def unreachable(self, policy: Policy) -> None:
        for r, d in unreachable_rules(policy.rules):
            why = "always wins over it" if r.decision != "deny" else "comes first, so it decides instead"
            # An error (ARCHITECTURE: validation): a rule that can never decide is almost always a
            # mistake in a reviewed change, e.g. an exception written below the deny it meant to relax.
            self.errors.append(
                PolicyIssue(
                    self.filename, r.line or 1, r.col or 1,
                    f"rule '{r.id}' is unreachable: deny rule '{d.id}' (line {d.line}) matches every call "
                    f"it matches and {why}; narrow or remove one of them (a deny always wins)",
                    "error",
                )
            )


class _YamlBudget:
    """Counts one YAML event stream against the input limits; `feed` returns the first limit crossed."""

    def __init__(self) -> None:
        self.depth = self.aliases = self.rule_count = 0
        self.rules_depth: int | None = None  # depth of the 'rules' sequence while inside it
        self.last_key: str | None = None
        self.expanded = 0  # nodes so far, each alias counted as the size of what it names
        self.anchor_size: dict[str, int] = {}
        self.open: list[tuple[str | None, int]] = []  # (anchor, expanded at its start) per open collection

    def feed(self, ev: yaml.Event) -> str | None:
        return self._expansion(ev) or self._nesting(ev)

    def _expansion(self, ev: yaml.Event) -> str | None:
        if isinstance(ev, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                return f"too many YAML aliases: over the limit of {MAX_YAML_ALIASES}"
            self.expanded += self.anchor_size.get(ev.anchor, 1)
        elif isinstance(ev, yaml.ScalarEvent):
            self.expanded += 1
            if ev.anchor:
                self.anchor_size[ev.anchor] = 1
        elif isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self.expanded += 1
            self.open.append((ev.anchor, self.expanded - 1))
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, start = self.open.pop()
            if anchor:
                self.anchor_size[anchor] = self.expanded - start
        if self.expanded > MAX_YAML_NODES:
            return f"YAML expands to too many nodes (aliases): over the limit of {MAX_YAML_NODES}"
        return None

    def _nesting(self, ev: yaml.Event) -> str | None:
        in_rules = self.rules_depth is not None and self.depth == self.rules_depth
        if in_rules and isinstance(ev, (yaml.ScalarEvent, yaml.AliasEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self.rule_count += 1
            if self.rule_count > MAX_RULES:
                return f"too many rules: over the limit of {MAX_RULES}"
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self.depth += 1
            if self.depth > MAX_YAML_DEPTH:
                return f"YAML nested too deeply: over the limit of {MAX_YAML_DEPTH} levels"
            if isinstance(ev, yaml.SequenceStartEvent) and self.depth == 2 and self.last_key == "rules":
                self.rules_depth = self.depth
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            if in_rules:
                self.rules_depth = None
            self.depth -= 1
        self.last_key = ev.value if isinstance(ev, yaml.ScalarEvent) and self.depth == 1 else None
        return None


def yaml_limit_issue(text: str, filename: str) -> PolicyIssue | None:
    """Walk the YAML events (an iterative parser, no recursion) and name the first limit exceeded."""
    budget = _YamlBudget()
    try:
        for ev in yaml.parse(text, Loader=yaml.CSafeLoader):
            message = budget.feed(ev)
            if message:
                return PolicyIssue(filename, ev.start_mark.line + 1, ev.start_mark.column + 1, message)
    except yaml.MarkedYAMLError as exc:
        # libyaml's scanner reads ahead and stops at its own nesting bound (1000) before the parser hands us
        # the event that crosses ours; it is the same limit to the author.
        if "maximum nesting depth" not in str(exc.problem):
            raise
        mark = exc.problem_mark
        return PolicyIssue(filename, mark.line + 1, mark.column + 1,
                           f"YAML nested too deeply: over the limit of {MAX_YAML_DEPTH} levels")
    return None


def load_policy_text(text: str, filename: str = "safety.yaml") -> LoadResult:
    """Parse and validate policy text. Never raises on bad input."""
    v = _Validator(filename)
    if not isinstance(text, str):
        v.error(None, "policy text must be a string")
        return LoadResult(None, v.errors, v.warnings)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_POLICY_BYTES:
        return LoadResult(
            None, [PolicyIssue(filename, 1, 1, f"policy is {size} bytes, over the limit of {MAX_POLICY_BYTES} bytes")], []
        )
    try:
        over = yaml_limit_issue(text, filename)
        if over is not None:
            return LoadResult(None, [over], [])
        root = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        msg = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            msg += f" ({exc.context})"
        return LoadResult(None, [PolicyIssue(filename, line, col, msg)], [])
    except yaml.YAMLError as exc:
        return LoadResult(None, [PolicyIssue(filename, 1, 1, f"YAML error: {exc}")], [])
    if root is None:
        v.error(None, "empty policy: expected a mapping with 'version' and 'rules'")
        return LoadResult(None, v.errors, v.warnings)
    try:
        policy = v.policy(root)
    except Exception as exc:  # defensive: a validator bug must not crash lint
        v.error(root, f"internal error while validating: {type(exc).__name__}: {exc}")
        policy = None
    if v.errors:
        return LoadResult(None, v.errors, v.warnings)
    return LoadResult(policy, [], v.warnings)


def local_version(path: str | os.PathLike[str], raw: bytes | None = None) -> str:
    """The version a policy file read from disk (not a signed bundle) reports: `local:<name>@<sha256[:7]>`,
    so a decision still names exactly which text decided it."""
    import hashlib

    p = os.fspath(path)
    if os.path.isdir(p):
        p = os.path.join(p, "safety.yaml")
    if raw is None:
        try:
            with open(p, "rb") as fh:
                raw = fh.read()
        except OSError:
            raw = b""
    try:  # the lock beside it decides too (tool pinning): its bytes count, when there is one
        with open(lock_path_for(p), "rb") as fh:
            raw = raw + b"\0tools.lock\0" + fh.read()
    except OSError:
        pass
    return f"local:{os.path.basename(p)}@{hashlib.sha256(raw).hexdigest()[:7]}"


def load_lock_text(text: str, filename: str = "tools.lock") -> tuple[ToolsLock | None, list[PolicyIssue]]:
    """Parse and validate the text of a tools.lock. Never raises on bad input."""
    v = _Validator(filename)
    try:
        over = yaml_limit_issue(text, filename)
        if over is not None:
            return None, [over]
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [PolicyIssue(filename, line, col, f"YAML syntax error: {exc.problem or exc.context}")]
    except yaml.YAMLError as exc:
        return None, [PolicyIssue(filename, 1, 1, f"YAML error: {exc}")]
    if root is None:
        return None, [PolicyIssue(filename, 1, 1, "empty tools.lock: expected 'version: 1' and 'servers'")]
    from .toollock import validate_lock

    lock = validate_lock(v, root)
    return (None if v.errors else lock), v.errors


def with_lock_text(result: LoadResult, lock_text: str | None, *, lock_filename: str) -> LoadResult:
    """A loaded policy with the repository's tools.lock (text, or None when the repository has none) attached."""
    if lock_text is None or result.policy is None:
        return result
    lock, errors = load_lock_text(lock_text, lock_filename)
    if not errors and result.policy.tools_lock is not None:
        errors = [PolicyIssue(lock_filename, 1, 1, "the policy pins tools inline (tools_lock) and in tools.lock; "
                                                   "keep one of them")]
    if errors:
        return LoadResult(None, [*result.errors, *errors], result.warnings)
    from dataclasses import replace

    return LoadResult(replace(result.policy, tools_lock=lock), result.errors, result.warnings)


def lock_path_for(policy_path: str) -> str:
    """Where the repository keeps tools.lock: next to its safety.yaml."""
    return os.path.join(os.path.dirname(policy_path), "tools.lock")


def load_policy_file(path: str | os.PathLike[str]) -> LoadResult:
    """Load `path`; a directory means its `safety.yaml`. A `tools.lock` next to it is loaded with it (its issues
    name that file). Never raises on bad input."""
    p = os.fspath(path)
    if os.path.isdir(p):
        p = os.path.join(p, "safety.yaml")
    try:
        with open(p, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        return LoadResult(None, [PolicyIssue(p, 1, 1, f"cannot read policy: {exc}")], [])
    result = load_policy_text(text, filename=p)
    lock_file = lock_path_for(p)
    try:
        with open(lock_file, encoding="utf-8") as fh:
            lock_text = fh.read()
    except FileNotFoundError:
        return result
    except (OSError, UnicodeDecodeError) as exc:
        return LoadResult(None, [PolicyIssue(lock_file, 1, 1, f"cannot read tools.lock: {exc}")], result.warnings)
    return with_lock_text(result, lock_text, lock_filename=lock_file)
