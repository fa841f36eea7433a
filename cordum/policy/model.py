"""The typed model of a safety.yaml v1 policy: frozen dataclasses, canonical dict form and back.

`Policy.to_dict()` is the canonical, JSON-serialisable form used as bundle content (stable key order,
durations in seconds, every default filled in). `policy_from_dict()` is its exact inverse for trusted
input (a verified bundle); untrusted text goes through `load_policy_text`, which also accepts the
canonical form because it is valid safety.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DECISIONS = ("allow", "require_approval", "deny")
DECISION_RANK = {"allow": 0, "require_approval": 1, "deny": 2}
MODES = ("enforce", "shadow")
ON_TIMEOUT = ("deny", "allow")
MAX_APPROVALS_REQUIRED = 5  # distinct reviewers a request can need (two-person rule and a little more)
ON_SECRET = ("mask", "withhold", "allow")  # what the sidecar does with a tool result that carries a secret
ON_TOOL_DRIFT = ("deny", "require_approval", "allow")  # what the sidecar does with a tool that differs from tools.lock

# Argument-condition operators in canonical order (the order `to_dict` writes them in).
ARG_OPS = (
    "exists",
    "equals",
    "in",
    "not_in",
    "glob",
    "not_glob",
    "regex",
    "not_regex",
    "prefix",
    "under",
    "outside",
    "lt",
    "lte",
    "gt",
    "gte",
)
LIST_OPS = frozenset({"in", "not_in", "glob", "not_glob", "regex", "not_regex", "prefix", "under", "outside"})
NUMERIC_OPS = frozenset({"lt", "lte", "gt", "gte"})

DEFAULT_REDACT = (
    "*token*",
    "*password*",
    "*passwd*",
    "*secret*",
    "*api_key*",
    "*apikey*",
    "*credential*",
    "*private_key*",
    "authorization",
    "*cookie*",
)
DEFAULT_MAX_VALUE_BYTES = 4096


@dataclass(frozen=True)
class SessionApproval:
    """The bound on "approve for this session": how many more calls, for how many minutes (None: no bound on
    that axis; the loader requires at least one)."""

    max_calls: int | None = None
    max_minutes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("max_calls", self.max_calls), ("max_minutes", self.max_minutes)) if v is not None}


def session_approval_from(value: Any) -> SessionApproval | bool | None:
    """`session_approval` from its dict form: None (not set), False (forbidden) or the bound."""
    if value is None or value is False:
        return value
    if isinstance(value, SessionApproval):
        return value
    if isinstance(value, dict):
        return SessionApproval(max_calls=value.get("max_calls"), max_minutes=value.get("max_minutes"))
    return False  # anything else (a bare `true` from an older writer) grants nothing: fail closed


@dataclass(frozen=True)
class Approval:
    """Approval settings; in `defaults` every field is set, on a rule `None` means "inherit".

    `session_approval` and `approvals_required` are None when nowhere set: that means no session answers
    (only "approve once") and one reviewer. They are left out of `to_dict` then, so policies that do not use
    them keep their canonical form (and bundle digests)."""

    timeout: int | None = 900
    on_timeout: str | None = "deny"
    reviewers: tuple[str, ...] | None = ("role:reviewer",)
    allow_self_approval: bool | None = False
    session_approval: SessionApproval | bool | None = None  # False: forbidden; None: inherit (none by default)
    approvals_required: int | None = None  # distinct reviewers who must approve; None: inherit (1 by default)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.on_timeout is not None:
            out["on_timeout"] = self.on_timeout
        if self.reviewers is not None:
            out["reviewers"] = list(self.reviewers)
        if self.allow_self_approval is not None:
            out["allow_self_approval"] = self.allow_self_approval
        if self.session_approval is not None:
            out["session_approval"] = (self.session_approval.to_dict()
                                       if isinstance(self.session_approval, SessionApproval) else False)
        if self.approvals_required is not None:
            out["approvals_required"] = self.approvals_required
        return out

    def merged_over(self, base: Approval) -> Approval:
        return Approval(
            timeout=base.timeout if self.timeout is None else self.timeout,
            on_timeout=base.on_timeout if self.on_timeout is None else self.on_timeout,
            reviewers=base.reviewers if self.reviewers is None else self.reviewers,
            allow_self_approval=(
                base.allow_self_approval if self.allow_self_approval is None else self.allow_self_approval
            ),
            session_approval=base.session_approval if self.session_approval is None else self.session_approval,
            approvals_required=base.approvals_required if self.approvals_required is None else self.approvals_required,
        )


@dataclass(frozen=True)
class Defaults:
    decision: str = "deny"
    approval: Approval = field(default_factory=Approval)

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "approval": self.approval.to_dict()}


@dataclass(frozen=True)
class ArgCondition:
    """Conditions on one argument (all operators must hold). `arg` may be a dotted path."""

    arg: str
    ops: tuple[tuple[str, Any], ...]
    line: int = field(default=0, compare=False, repr=False)
    col: int = field(default=0, compare=False, repr=False)

    def ops_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for op, value in self.ops:
            out[op] = list(value) if isinstance(value, tuple) else value
        return out


def _args_to_dict(conds: tuple[ArgCondition, ...]) -> dict[str, Any]:
    return {c.arg: c.ops_dict() for c in conds}


def _args_from_dict(d: dict[str, Any] | None) -> tuple[ArgCondition, ...]:
    out = []
    for name, ops in (d or {}).items():
        norm = []
        for op in ARG_OPS:
            if op in ops:
                value = ops[op]
                if op in LIST_OPS:
                    value = tuple(value)
                norm.append((op, value))
        out.append(ArgCondition(arg=name, ops=tuple(norm)))
    return tuple(out)


@dataclass(frozen=True)
class ToolMapping:
    """One `tools` entry: maps an MCP call (server/tool globs + `when`) to topic, risk tags, target."""

    topic: str
    server: tuple[str, ...] = ("*",)
    tool: tuple[str, ...] = ("*",)
    when: tuple[ArgCondition, ...] = ()
    risk_tags: tuple[str, ...] = ()
    target: str = ""
    write: bool = False
    line: int = field(default=0, compare=False, repr=False)
    col: int = field(default=0, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"server": list(self.server), "tool": list(self.tool)}
        if self.when:
            out["when"] = {"args": _args_to_dict(self.when)}
        out["topic"] = self.topic
        out["risk_tags"] = list(self.risk_tags)
        out["target"] = self.target
        out["write"] = self.write
        return out


@dataclass(frozen=True)
class Match:
    topics: tuple[str, ...] = ()  # empty: any topic
    risk_tags: tuple[str, ...] = ()  # any-of; empty: no constraint
    agents: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    args: tuple[ArgCondition, ...] = ()
    after: tuple[str, ...] = ()  # session labels, any-of: matches only once an earlier call set one of them

    def to_dict(self) -> dict[str, Any]:
        out = {
            "topics": list(self.topics),
            "risk_tags": list(self.risk_tags),
            "agents": list(self.agents),
            "teams": list(self.teams),
            "environments": list(self.environments),
            "args": _args_to_dict(self.args),
        }
        if self.after:  # left out when empty: bundles of policies without flow rules keep their digest
            out["after"] = list(self.after)
        return out


@dataclass(frozen=True)
class RuleLimits:
    """Per-rule runtime limits, per agent session, on calls this rule decided."""

    max_calls: int | None = None
    per_minute: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("max_calls", self.max_calls), ("per_minute", self.per_minute)) if v is not None}


@dataclass(frozen=True)
class Rule:
    id: str
    decision: str
    match: Match = field(default_factory=Match)
    reason: str = ""
    mode: str = "enforce"
    description: str = ""
    approval: Approval | None = None  # partial override of defaults.approval
    limits: RuleLimits | None = None
    line: int = field(default=0, compare=False, repr=False)
    col: int = field(default=0, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id}
        if self.description:
            out["description"] = self.description
        out["match"] = self.match.to_dict()
        out["decision"] = self.decision
        out["reason"] = self.reason
        out["mode"] = self.mode
        if self.approval is not None:
            out["approval"] = self.approval.to_dict()
        if self.limits is not None:
            out["limits"] = self.limits.to_dict()
        return out


@dataclass(frozen=True)
class LabelRule:
    """One `labels` entry: a call that matches sets `label` for the rest of its session, once the call runs."""

    label: str
    match: Match = field(default_factory=Match)
    description: str = ""
    line: int = field(default=0, compare=False, repr=False)
    col: int = field(default=0, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label}
        if self.description:
            out["description"] = self.description
        out["match"] = self.match.to_dict()
        return out


@dataclass(frozen=True)
class SessionLimits:
    max_calls: int | None = None
    max_duration: int | None = None  # seconds
    max_writes: int | None = None


@dataclass(frozen=True)
class RateLimits:
    per_minute: int | None = None


@dataclass(frozen=True)
class Limits:
    session: SessionLimits = field(default_factory=SessionLimits)
    rate: RateLimits = field(default_factory=RateLimits)

    def to_dict(self) -> dict[str, Any]:
        s, r = self.session, self.rate
        return {
            "session": {"max_calls": s.max_calls, "max_duration": s.max_duration, "max_writes": s.max_writes},
            "rate": {"per_minute": r.per_minute},
        }


@dataclass(frozen=True)
class EvidenceSettings:
    """How arguments are recorded in evidence: key globs to redact, value size cap, secret scanning."""

    redact: tuple[str, ...] = DEFAULT_REDACT
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    redact_secret_values: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "redact": list(self.redact),
            "max_value_bytes": self.max_value_bytes,
            "redact_secret_values": self.redact_secret_values,
        }


@dataclass(frozen=True)
class ResultSettings:
    """Scanning of tool results before they reach the agent: detect-secrets' detectors plus `patterns`."""

    on_secret: str = "mask"
    patterns: tuple[tuple[str, str], ...] = ()  # (name, RE2 regex)

    @property
    def is_default(self) -> bool:
        return self == ResultSettings()

    def to_dict(self) -> dict[str, Any]:
        return {"on_secret": self.on_secret, "patterns": [{"name": n, "regex": r} for n, r in self.patterns]}


@dataclass(frozen=True)
class LockedTool:
    """One tool as `tools.lock` pins it: its name, description and input schema, and the digest over all three
    (`cordum.policy.toollock.tool_digest`) that the sidecar compares with what the server lists."""

    name: str
    digest: str
    description: str = ""
    input_schema: Any = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": self.digest, "description": self.description,
                "input_schema": self.input_schema}


@dataclass(frozen=True)
class ToolsLock:
    """`tools.lock`: per upstream server name, the tools pinned for it (in the order the file lists them)."""

    servers: tuple[tuple[str, tuple[LockedTool, ...]], ...] = ()

    def server(self, name: str) -> dict[str, LockedTool] | None:
        for server, tools in self.servers:
            if server == name:
                return {t.name: t for t in tools}
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"version": 1, "servers": {name: [t.to_dict() for t in tools] for name, tools in self.servers}}


def tools_lock_from_dict(d: dict[str, Any]) -> ToolsLock:
    return ToolsLock(servers=tuple(
        (name, tuple(LockedTool(name=t["name"], digest=t["digest"], description=t.get("description") or "",
                                input_schema=t.get("input_schema") or {}) for t in tools))
        for name, tools in (d.get("servers") or {}).items()
    ))


@dataclass(frozen=True)
class Policy:
    version: str = "v1"
    defaults: Defaults = field(default_factory=Defaults)
    tools: tuple[ToolMapping, ...] = ()
    rules: tuple[Rule, ...] = ()
    limits: Limits = field(default_factory=Limits)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    results: ResultSettings = field(default_factory=ResultSettings)
    labels: tuple[LabelRule, ...] = ()
    on_tool_drift: str = "deny"  # applies only where `tools_lock` pins the server
    tools_lock: ToolsLock | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "version": self.version,
            "defaults": self.defaults.to_dict(),
            "tools": [t.to_dict() for t in self.tools],
            "rules": [r.to_dict() for r in self.rules],
            "limits": self.limits.to_dict(),
            "evidence": self.evidence.to_dict(),
        }
        if not self.results.is_default:  # left out when default: bundles of older policies keep their digest
            out["results"] = self.results.to_dict()
        if self.labels:  # likewise left out when there are none
            out["labels"] = [entry.to_dict() for entry in self.labels]
        # left out when unused, for the same reason; the lock travels in the bundle as part of the policy, so it
        # is hashed and signed with it
        if self.tools_lock is not None or self.on_tool_drift != "deny":
            out["on_tool_drift"] = self.on_tool_drift
        if self.tools_lock is not None:
            out["tools_lock"] = self.tools_lock.to_dict()
        return out

    def rule(self, rule_id: str) -> Rule | None:
        for r in self.rules:
            if r.id == rule_id:
                return r
        return None


def _approval_from_dict(d: dict[str, Any], *, partial: bool) -> Approval:
    base = Approval(None, None, None, None) if partial else Approval()
    reviewers = d.get("reviewers", base.reviewers)
    return Approval(
        timeout=d.get("timeout", base.timeout),
        on_timeout=d.get("on_timeout", base.on_timeout),
        reviewers=tuple(reviewers) if reviewers is not None else None,
        allow_self_approval=d.get("allow_self_approval", base.allow_self_approval),
        session_approval=session_approval_from(d.get("session_approval")),
        approvals_required=d.get("approvals_required"),
    )


MATCH_KEYS = frozenset({"topics", "risk_tags", "agents", "teams", "environments", "args", "after"})


def _match_from_dict(m: dict[str, Any]) -> Match:
    # A condition this engine does not know would be dropped, widening the rule (an `allow` would match calls
    # it was meant not to): refuse instead, so a sidecar too old for a bundle fails closed and says why.
    unknown = sorted(set(m) - MATCH_KEYS)
    if unknown:
        raise ValueError(f"a rule's match uses {', '.join(unknown)}, which this version of Cordum does not know; "
                         "upgrade the sidecar")
    return Match(
        topics=tuple(m.get("topics") or ()),
        risk_tags=tuple(m.get("risk_tags") or ()),
        agents=tuple(m.get("agents") or ()),
        teams=tuple(m.get("teams") or ()),
        environments=tuple(m.get("environments") or ()),
        args=_args_from_dict(m.get("args")),
        after=tuple(m.get("after") or ()),
    )


def policy_from_dict(d: dict[str, Any]) -> Policy:
    """Rebuild a Policy from `Policy.to_dict()` output (trusted input, e.g. a verified bundle)."""
    defaults_d = d.get("defaults") or {}
    defaults = Defaults(
        decision=defaults_d.get("decision", "deny"),
        approval=_approval_from_dict(defaults_d.get("approval") or {}, partial=False),
    )
    tools = tuple(
        ToolMapping(
            topic=t["topic"],
            server=tuple(t.get("server") or ("*",)),
            tool=tuple(t.get("tool") or ("*",)),
            when=_args_from_dict((t.get("when") or {}).get("args")),
            risk_tags=tuple(t.get("risk_tags") or ()),
            target=t.get("target") or "",
            write=bool(t.get("write", False)),
        )
        for t in d.get("tools") or ()
    )
    rules = []
    for r in d.get("rules") or ():
        m = r.get("match") or {}
        rules.append(
            Rule(
                id=r["id"],
                decision=r["decision"],
                match=_match_from_dict(m),
                reason=r.get("reason") or "",
                mode=r.get("mode") or "enforce",
                description=r.get("description") or "",
                approval=_approval_from_dict(r["approval"], partial=True) if r.get("approval") is not None else None,
                limits=RuleLimits(**r["limits"]) if r.get("limits") is not None else None,
            )
        )
    lim = d.get("limits") or {}
    sess = lim.get("session") or {}
    rate = lim.get("rate") or {}
    ev = d.get("evidence") or {}
    res = d.get("results") or {}
    labels = tuple(
        LabelRule(label=e["label"], match=_match_from_dict(e.get("match") or {}), description=e.get("description") or "")
        for e in d.get("labels") or ()
    )
    return Policy(
        labels=labels,
        on_tool_drift=d.get("on_tool_drift", "deny"),
        tools_lock=tools_lock_from_dict(d["tools_lock"]) if d.get("tools_lock") is not None else None,
        results=ResultSettings(on_secret=res.get("on_secret", "mask"),
                               patterns=tuple((p["name"], p["regex"]) for p in res.get("patterns") or ())),
        version=d.get("version", "v1"),
        defaults=defaults,
        tools=tools,
        rules=tuple(rules),
        limits=Limits(
            session=SessionLimits(
                max_calls=sess.get("max_calls"),
                max_duration=sess.get("max_duration"),
                max_writes=sess.get("max_writes"),
            ),
            rate=RateLimits(per_minute=rate.get("per_minute")),
        ),
        evidence=EvidenceSettings(
            redact=tuple(ev.get("redact", DEFAULT_REDACT)),
            max_value_bytes=ev.get("max_value_bytes", DEFAULT_MAX_VALUE_BYTES),
            redact_secret_values=ev.get("redact_secret_values", True),
        ),
    )
