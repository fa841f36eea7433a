"""Compile a Policy once, then decide calls: pure, no I/O, thread-safe.

Evaluation: map the call through the tool map (first matching entry) to topic, risk tags and target;
collect every enforce-mode rule that matches; the most restrictive wins (deny > require_approval >
allow), ties go to the first in file order; nothing matched means `defaults.decision`. Shadow-mode
rules are evaluated and reported, never applied.

Speed: rules are indexed by the literal prefix of their topic patterns; all patterns are compiled
once; two bounded caches keep per-(server, tool) tool-map candidates and per-(topic, tags, agent,
team, environment) rule candidates. Both are pure functions of their keys, so a cache hit returns
exactly what a miss would compute; argument conditions are always evaluated per call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .model import DECISION_RANK, ArgCondition, Match, Policy, Rule
from .patterns import (
    compile_name_glob,
    compile_path_glob,
    compile_regexes,
    has_wildcard,
    is_under,
    literal_prefix,
    resolve_path,
)

__all__ = ["Call", "CompiledPolicy", "Decision", "compile_policy", "evaluate", "label_origin_text", "TOPIC_PREFIX"]

TOPIC_PREFIX = "job.mcp-bridge."
_MISSING = object()
_CACHE_MAX = 8192
# When a tool map entry has no target template, the evidence target is the first of these arguments.
DEFAULT_TARGET_ARGS = ("path", "file_path", "notebook_path", "paths", "source", "repo_path", "url", "command")


@dataclass(frozen=True, slots=True)
class Call:
    server: str = ""
    tool: str = ""
    arguments: dict = field(default_factory=dict)
    agent: str = ""
    team: str = ""
    environment: str = ""
    topic: str | None = None
    risk_tags: tuple | None = None
    root: str = ""  # the agent's working root (repository); relative paths resolve against it

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Call:
        """Build a Call from the CLI's --call JSON (unknown keys such as session_id are ignored)."""
        if not isinstance(d, dict):
            raise ValueError("a call must be a JSON object")
        args = d.get("arguments", d.get("args"))
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ValueError("'arguments' must be an object")
        topic = d.get("topic")
        if topic is not None and not isinstance(topic, str):
            raise ValueError("'topic' must be a string")
        tags = d.get("risk_tags")
        if tags is not None:
            if isinstance(tags, str):
                tags = [tags]
            if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
                raise ValueError("'risk_tags' must be a list of strings")
            tags = tuple(tags)
        values = {}
        for key in ("server", "tool", "agent", "team", "environment", "root"):
            v = d.get(key)
            if key == "environment" and v is None:
                v = d.get("env")
            if v is None:
                v = ""
            if not isinstance(v, str):
                raise ValueError(f"'{key}' must be a string")
            values[key] = v
        if topic is None and not values["server"] and not values["tool"]:
            raise ValueError("a call needs 'server' and 'tool', or a 'topic'")
        return cls(arguments=args, topic=topic, risk_tags=tags, **values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"server": self.server, "tool": self.tool, "arguments": self.arguments}
        for key in ("agent", "team", "environment", "root"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.topic is not None:
            out["topic"] = self.topic
        if self.risk_tags is not None:
            out["risk_tags"] = list(self.risk_tags)
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    decision: str
    rule: str | None
    matched: tuple[str, ...]
    shadow: tuple[dict, ...]
    reason: str
    topic: str
    risk_tags: tuple[str, ...]
    target: str
    policy_version: str
    action: str
    is_write: bool
    approval: dict | None = None
    unmapped: bool = False  # no tool map entry knew the call and no rule matched it: the map needs an entry
    labels: tuple[str, ...] = ()  # session labels this call sets once it runs (the policy's `labels` entries)
    flow: dict | None = None  # the deciding rule waited for a label: {"label", "rule", "set_by": origin}

    def to_dict(self) -> dict[str, Any]:
        """The `cordum policy explain` JSON object."""
        return {
            "decision": self.decision,
            "rule": self.rule,
            "matched": list(self.matched),
            "shadow": [dict(s) for s in self.shadow],
            "reason": self.reason,
            "topic": self.topic,
            "risk_tags": list(self.risk_tags),
            "target": self.target,
            "policy_version": self.policy_version,
            "action": self.action,
            "is_write": self.is_write,
            "approval": dict(self.approval) if self.approval is not None else None,
            **({"unmapped": True} if self.unmapped else {}),
            **({"labels": list(self.labels)} if self.labels else {}),
            **({"flow": dict(self.flow)} if self.flow is not None else {}),
        }


# -- argument conditions ----------------------------------------------------------------------

ArgTest = Callable[[dict, str], bool]  # (arguments, root) -> bool


def lookup_arg(args: dict, name: str) -> Any:
    v = args.get(name, _MISSING)
    if v is _MISSING and "." in name:
        cur: Any = args
        for part in name.split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
            else:
                return _MISSING
        return cur
    return v


def arg_getter(name: str) -> Callable[[dict], Any]:
    """A getter for one argument name; "a|b|c" means the first of a, b, c that is present."""
    if "|" in name:
        names = tuple(n.strip() for n in name.split("|") if n.strip())

        def first(args: dict) -> Any:
            for n in names:
                v = lookup_arg(args, n)
                if v is not _MISSING:
                    return v
            return _MISSING

        return first
    if "." in name:
        return lambda args: lookup_arg(args, name)
    return lambda args: args.get(name, _MISSING)


def _strings(v: Any) -> list[str] | None:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list | tuple):
        out = [x for x in v if isinstance(x, str)]
        return out or None
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _base_dir(args: dict, root: str) -> str:
    cwd = args.get("cwd")
    if isinstance(cwd, str) and cwd:
        return cwd if cwd.startswith("/") or not root else resolve_path(cwd, root)
    return root


def _compile_roots(roots: tuple[str, ...]) -> Callable[[dict, str], list[str]]:
    def resolve(args: dict, root: str) -> list[str]:
        out = []
        base = _base_dir(args, root)
        for r in roots:
            if "{root}" in r or "{cwd}" in r:
                rv = root or base
                cv = base
                r = r.replace("{root}", rv).replace("{cwd}", cv)
                if r.startswith("/"):
                    out.append(resolve_path(r, ""))
                else:  # unknown root: "." means "relative and not escaping"
                    out.append(resolve_path(r, "") if r.strip("/") else ".")
            else:
                out.append(resolve_path(r, base if not r.startswith("/") else ""))
        return out

    return resolve


def _compile_op(name: str, op: str, value: Any) -> ArgTest:  # noqa: C901 - a table of argument operators compiled into closures; each branch is one operator
    getter = arg_getter(name)
    if op == "exists":
        want = bool(value)
        return lambda a, r: (getter(a) is not _MISSING) == want
    if op == "equals":
        return lambda a, r: _same(getter(a), value)
    if op in ("in", "not_in"):
        vals = tuple(value)
        neg = op == "not_in"

        def t_in(a: dict, r: str) -> bool:
            v = getter(a)
            if v is _MISSING:
                return False
            return any(_same(v, x) for x in vals) != neg

        return t_in
    if op in ("lt", "lte", "gt", "gte"):
        import operator

        cmp = {"lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge}[op]

        def t_num(a: dict, r: str) -> bool:
            v = getter(a)
            return isinstance(v, int | float) and not isinstance(v, bool) and cmp(v, value)

        return t_num
    if op in ("glob", "not_glob", "regex", "not_regex", "prefix"):
        if op in ("glob", "not_glob"):
            m = compile_path_glob(value)
        elif op in ("regex", "not_regex"):
            m = compile_regexes(value)
        else:
            prefixes = tuple(value)

            def m(s: str) -> bool:
                return s.startswith(prefixes)

        neg = op.startswith("not_")

        def t_str(a: dict, r: str) -> bool:
            vs = _strings(getter(a))
            if vs is None:
                return False
            hit = any(m(s) for s in vs)
            return hit != neg

        return t_str
    if op in ("under", "outside"):
        roots_of = _compile_roots(tuple(value))
        outside = op == "outside"

        def t_path(a: dict, r: str) -> bool:
            vs = _strings(getter(a))
            if vs is None:
                return False
            roots = roots_of(a, r)
            base = _base_dir(a, r)
            for s in vs:
                p = resolve_path(s, base)
                inside = any(is_under(p, root) for root in roots)
                if outside and not inside:
                    return True
                if not outside and inside:
                    return True
            return False

        return t_path
    raise ValueError(f"unknown argument operator {op!r}")  # pragma: no cover - loader rejects these


def compile_conditions(conds: tuple[ArgCondition, ...]) -> tuple[ArgTest, ...]:
    return tuple(_compile_op(c.arg, op, value) for c in conds for op, value in c.ops)


def _render_target(pieces: tuple[tuple[str, str | None], ...] | None, args: dict) -> str:
    if pieces is None:
        for key in DEFAULT_TARGET_ARGS:
            v = args.get(key)
            if isinstance(v, str) and v:
                return v if len(v) <= 256 else v[:253] + "..."
            if isinstance(v, list) and v:
                return ",".join(str(x) for x in v)[:256]
        return ""
    out = []
    for lit, fname in pieces:
        out.append(lit)
        if fname is not None:
            v = lookup_arg(args, fname)
            if v is _MISSING or v is None:
                continue
            out.append(v if isinstance(v, str) else str(v))
    return "".join(out)


def _target_pieces(template: str) -> tuple[tuple[str, str | None], ...] | None:
    if not template:
        return None
    import string

    return tuple((lit, fname) for lit, fname, _spec, _conv in string.Formatter().parse(template))


class _CTool:
    __slots__ = ("entry", "server_m", "tool_m", "tests", "topic", "tags", "pieces", "write")

    def __init__(self, entry) -> None:
        self.entry = entry
        self.server_m = compile_name_glob(entry.server)
        self.tool_m = compile_name_glob(entry.tool)
        self.tests = compile_conditions(entry.when)
        self.topic = entry.topic
        self.tags = tuple(entry.risk_tags)
        self.pieces = _target_pieces(entry.target)
        self.write = entry.write


class _CMatch:
    """A compiled `match`; `fits` checks one call in full (the rules' index does most of this for plain rules)."""

    __slots__ = ("topic_m", "tags", "agent_m", "team_m", "env_m", "tests", "after")

    def __init__(self, m: Match) -> None:
        self.topic_m = compile_name_glob(m.topics) if m.topics else None
        self.tags = frozenset(t.lower() for t in m.risk_tags) if m.risk_tags else None
        self.agent_m = compile_name_glob(m.agents) if m.agents else None
        self.team_m = compile_name_glob(m.teams) if m.teams else None
        self.env_m = compile_name_glob(m.environments) if m.environments else None
        self.tests = compile_conditions(m.args)
        self.after = tuple(m.after)

    def fits_static(self, topic_l: str, tagset: frozenset, agent: str, team: str, env: str) -> bool:
        """Everything but the argument conditions: a pure function of the engine's cache keys."""
        if self.topic_m is not None and not self.topic_m(topic_l):
            return False
        if self.tags is not None and not (self.tags & tagset):
            return False
        if self.agent_m is not None and not self.agent_m(agent):
            return False
        if self.team_m is not None and not self.team_m(team):
            return False
        return self.env_m is None or bool(self.env_m(env))

    def fits(self, topic_l: str, tagset: frozenset, call: Call) -> bool:
        if not self.fits_static(topic_l, tagset, call.agent, call.team, call.environment):
            return False
        args, root = call.arguments, call.root
        return all(test(args, root) for test in self.tests)


class _CRule(_CMatch):
    __slots__ = ("idx", "rule", "id", "decision", "rank", "shadow")

    def __init__(self, idx: int, rule: Rule) -> None:
        super().__init__(rule.match)
        self.idx = idx
        self.rule = rule
        self.id = rule.id
        self.decision = rule.decision
        self.rank = DECISION_RANK[rule.decision]
        self.shadow = rule.mode == "shadow"


def label_origin_text(label: str, origin: dict | None) -> str:
    """How a decision names the earlier call that set a session label: tool, target, call id and time."""
    o = origin or {}
    what = f"{o.get('server') or '?'}.{o.get('tool') or '?'}"
    if o.get("target"):
        what += f" on {o['target']}"
    when = ", ".join(x for x in (f"call {o['decision_id']}" if o.get("decision_id") else "",
                                 f"at {o['timestamp']}" if o.get("timestamp") else "") if x)
    return f"session label '{label}' was set by {what}" + (f" ({when})" if when else "")


class _Static:
    """Rule candidates for one (topic, tags, agent, team, environment) key."""

    __slots__ = ("rules", "dynamic", "result")

    def __init__(self, rules: tuple[_CRule, ...]) -> None:
        self.rules = rules
        self.dynamic = any(r.tests for r in rules)
        self.result = None if self.dynamic else _combine(rules)


def _combine(rules: tuple[_CRule, ...] | list[_CRule]) -> tuple[_CRule | None, tuple[str, ...], tuple[tuple[str, str], ...]]:
    winner = None
    matched = []
    shadow = []
    for r in rules:
        if r.shadow:
            shadow.append((r.id, r.decision))
            continue
        matched.append(r.id)
        if winner is None or r.rank > winner.rank:
            winner = r
    return winner, tuple(matched), tuple(shadow)


class CompiledPolicy:
    """An immutable, precompiled policy. Share one instance between threads."""

    def __init__(self, policy: Policy, version: str = "") -> None:
        self.policy = policy
        self.version = version
        self.default_decision = policy.defaults.decision
        base = policy.defaults.approval
        self.default_approval = base.to_dict()
        self._approvals = {
            r.id: (r.approval.merged_over(base).to_dict() if r.approval is not None else self.default_approval)
            for r in policy.rules
        }
        self.tools = tuple(_CTool(t) for t in policy.tools)
        ev = policy.evidence
        self.redact_matcher = compile_name_glob(ev.redact) if ev.redact else (lambda s: False)
        self.rules = tuple(_CRule(i, r) for i, r in enumerate(policy.rules))
        self.rules_by_id = {r.id: r for r in policy.rules}
        # Session data-flow: rules with `match.after` are kept out of the index and checked only for a call
        # whose session holds a label; `labels` entries are checked only when the policy has any.
        self.flow_rules = tuple(cr for cr in self.rules if cr.after)
        self.label_entries = tuple((e.label, _CMatch(e.match)) for e in policy.labels)
        self.has_flows = bool(self.flow_rules or self.label_entries)
        any_topic: list[_CRule] = []
        exact: dict[str, list[_CRule]] = {}
        prefixed: dict[str, list[_CRule]] = {}
        for cr in self.rules:
            if cr.after:
                continue
            topics = cr.rule.match.topics
            if not topics:
                any_topic.append(cr)
                continue
            for pat in topics:
                low = pat.lower()
                if not has_wildcard(low):
                    exact.setdefault(low, []).append(cr)
                else:
                    lp = literal_prefix(low)
                    key = lp[: lp.rfind(".") + 1]
                    prefixed.setdefault(key, []).append(cr)
        self._any = tuple(any_topic)
        self._exact = {k: tuple(v) for k, v in exact.items()}
        self._prefixed = {k: tuple(v) for k, v in prefixed.items()}
        self._tool_cache: dict[tuple[str, str], tuple[_CTool, ...]] = {}
        self._topic_cache: dict[str, tuple[_CRule, ...]] = {}
        self._static_cache: dict[tuple, _Static] = {}
        self._label_cache: dict[tuple, tuple] = {}

    # -- tool map ----------------------------------------------------------------------------
    def _tool_candidates(self, server: str, tool: str) -> tuple[_CTool, ...]:
        key = (server, tool)
        hit = self._tool_cache.get(key)
        if hit is None:
            hit = tuple(t for t in self.tools if t.server_m(server) and t.tool_m(tool))
            if len(self._tool_cache) >= _CACHE_MAX:
                self._tool_cache.clear()
            self._tool_cache[key] = hit
        return hit

    def map_call(self, call: Call) -> tuple[str, tuple[str, ...], str, bool]:
        """(topic, risk_tags, target, write) for a call, via the tool map."""
        args = call.arguments
        if call.topic is not None:
            return call.topic, tuple(call.risk_tags or ()), _render_target(None, args), False
        root = call.root
        for t in self._tool_candidates(call.server, call.tool):
            if t.tests:
                ok = True
                for test in t.tests:
                    if not test(args, root):
                        ok = False
                        break
                if not ok:
                    continue
            return t.topic, t.tags, _render_target(t.pieces, args), t.write
        return f"{TOPIC_PREFIX}{call.server}.{call.tool}", (), _render_target(None, args), False

    # -- rules -------------------------------------------------------------------------------
    def _topic_rules(self, topic_l: str) -> tuple[_CRule, ...]:
        hit = self._topic_cache.get(topic_l)
        if hit is not None:
            return hit
        cands: dict[int, _CRule] = {r.idx: r for r in self._any}
        for r in self._exact.get(topic_l, ()):
            cands[r.idx] = r
        pos = -1
        while True:
            key = topic_l[: pos + 1]
            for r in self._prefixed.get(key, ()):
                if r.idx not in cands and r.topic_m(topic_l):
                    cands[r.idx] = r
            pos = topic_l.find(".", pos + 1)
            if pos < 0:
                break
        hit = tuple(cands[i] for i in sorted(cands))
        if len(self._topic_cache) >= _CACHE_MAX:
            self._topic_cache.clear()
        self._topic_cache[topic_l] = hit
        return hit

    def _static(self, topic_l: str, tags: tuple[str, ...], agent: str, team: str, env: str) -> _Static:
        key = (topic_l, tags, agent, team, env)
        hit = self._static_cache.get(key)
        if hit is not None:
            return hit
        tagset = frozenset(t.lower() for t in tags)
        out = []
        for r in self._topic_rules(topic_l):
            if r.tags is not None and not (r.tags & tagset):
                continue
            if r.agent_m is not None and not r.agent_m(agent):
                continue
            if r.team_m is not None and not r.team_m(team):
                continue
            if r.env_m is not None and not r.env_m(env):
                continue
            out.append(r)
        hit = _Static(tuple(out))
        if len(self._static_cache) >= _CACHE_MAX:
            self._static_cache.clear()
        self._static_cache[key] = hit
        return hit

    def approval_for(self, rule_id: str | None) -> dict:
        if rule_id is None:
            return self.default_approval
        return self._approvals.get(rule_id, self.default_approval)

    def approval_of(self, rule_id: str | None, matched: tuple[str, ...]) -> dict:
        """The held call's approval settings: the winning rule's, with the scopes of every other matching
        require_approval rule folded in strictest-first, so a rule that asks for two reviewers or forbids session
        answers is not lost to a broader rule that comes earlier: the most reviewers required, session answers
        only if every such rule offers them, each bound the smallest."""
        out = _copy_approval(self.approval_for(rule_id))
        for other in matched:
            if other == rule_id or self.rules_by_id[other].decision != "require_approval":
                continue
            theirs = self._approvals.get(other, self.default_approval)
            required = max(out.get("approvals_required") or 1, theirs.get("approvals_required") or 1)
            if required > 1:
                out["approvals_required"] = required
            mine, other_session = out.get("session_approval"), theirs.get("session_approval")
            if mine is not None or other_session is not None:  # unset on both: stays unset (not offered)
                out["session_approval"] = _narrower_session(mine, other_session)
        return out

    def _labels_set(self, topic_l: str, tags: tuple[str, ...], call: Call) -> tuple[str, ...]:
        """The labels of the `labels` entries the call matches: entries are narrowed once per (topic, tags,
        agent, team, environment), like rules; only their argument conditions run per call."""
        key = (topic_l, tags, call.agent, call.team, call.environment)
        cands = self._label_cache.get(key)
        if cands is None:
            tagset = frozenset(t.lower() for t in tags)
            cands = tuple((label, m.tests) for label, m in self.label_entries
                          if m.fits_static(topic_l, tagset, *key[2:]))
            if len(self._label_cache) >= _CACHE_MAX:
                self._label_cache.clear()
            self._label_cache[key] = cands
        if not cands:
            return ()
        args, root = call.arguments, call.root
        return tuple(dict.fromkeys(label for label, tests in cands if all(t(args, root) for t in tests)))

    def _flow_hits(self, topic_l: str, tags: tuple[str, ...], call: Call, session: Any) -> list[_CRule]:
        tagset = frozenset(t.lower() for t in tags)
        return [r for r in self.flow_rules
                if any(label in session for label in r.after) and r.fits(topic_l, tagset, call)]

    def evaluate(self, call: Call | dict, session: Any = None) -> Decision:  # noqa: C901 - the decision's steps, in order
        """Decide one call. `session`: the labels earlier calls of its session set, a mapping (or set) of label
        -> the origin of the earliest call that set it ({decision_id, server, tool, target, timestamp}); only
        rules with `match.after` read it, and without it they never match."""
        if not isinstance(call, Call):
            call = Call.from_dict(call)
        topic, tags, target, write = self.map_call(call)
        topic_l = topic.lower()
        st = self._static(topic_l, tags, call.agent, call.team, call.environment)
        if st.result is not None:
            winner, matched, shadow = st.result
        else:
            args, root = call.arguments, call.root
            hits = []
            for r in st.rules:
                if r.tests:
                    ok = True
                    for test in r.tests:
                        if not test(args, root):
                            ok = False
                            break
                    if not ok:
                        continue
                hits.append(r)
            winner, matched, shadow = _combine(hits)
        flow = None
        if session and self.flow_rules:
            extra = self._flow_hits(topic_l, tags, call, session)
            if extra:
                base = list(st.rules) if st.result is not None else hits
                winner, matched, shadow = _combine(sorted([*base, *extra], key=lambda r: r.idx))
                if winner is not None and winner.after:
                    label = next(lb for lb in winner.after if lb in session)
                    origin = session.get(label) if isinstance(session, dict) else None
                    flow = {"label": label, "rule": winner.id, "set_by": dict(origin or {})}
        if winner is not None:
            decision = winner.decision
            rule_id = winner.id
            reason = winner.rule.reason or f"Matched rule '{rule_id}'"
            if flow is not None:
                reason = f"{reason} ({label_origin_text(flow['label'], flow['set_by'])})"
        else:
            decision = self.default_decision
            rule_id = None
            reason = f"No rule matched topic '{topic}'; default decision is {decision}"
        unmapped = winner is None and call.topic is None and topic == f"{TOPIC_PREFIX}{call.server}.{call.tool}"
        if unmapped:
            reason = (f"unmapped tool {call.tool} of {call.server}: add it to the tool map "
                      f"(no rule matched; default decision is {decision})")
        action = topic[15:] if topic_l.startswith(TOPIC_PREFIX) else topic
        is_write = write or ".write." in topic_l or "code-change" in tags
        return Decision(
            decision,
            rule_id,
            matched,
            tuple({"rule": s[0], "decision": s[1]} for s in shadow) if shadow else (),
            reason,
            topic,
            tuple(tags),
            target,
            self.version,
            action,
            is_write,
            (self.approval_of(rule_id, matched) if len(matched) > 1 else _copy_approval(self.approval_for(rule_id)))
            if decision == "require_approval" else None,
            unmapped,
            self._labels_set(topic_l, tags, call) if self.label_entries else (),
            flow,
        )


def _narrower_session(a: dict | bool | None, b: dict | bool | None) -> dict | bool:
    """Two `session_approval` settings as one: False (none) unless both offer it; then each axis's smaller bound
    (an axis one of them leaves open takes the other's)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    out = {}
    for key in ("max_calls", "max_minutes"):
        values = [v for v in (a.get(key), b.get(key)) if v is not None]
        if values:
            out[key] = min(values)
    return out


def _copy_approval(a: dict) -> dict:
    out = dict(a)
    if "reviewers" in out:
        out["reviewers"] = list(out["reviewers"])
    if isinstance(out.get("session_approval"), dict):
        out["session_approval"] = dict(out["session_approval"])
    return out


def compile_policy(policy: Policy, version: str = "") -> CompiledPolicy:
    return CompiledPolicy(policy, version)


def evaluate(compiled: CompiledPolicy, call: Call | dict, session: Any = None) -> Decision:
    """Decide one call (`session`: its session's labels, see `CompiledPolicy.evaluate`). Pure: no I/O; safe to
    call from many threads at once."""
    return compiled.evaluate(call, session)
