"""Local decisions and evidence: the policy in force, one decision per call, one spooled record per call.

The policy comes from a pluggable source: a local file (`--bundle`: a signed bundle JSON verified against the
trusted keys, or a plain safety.yaml for local development) or the control plane's BundleClient. With no valid
policy every call is denied with a reason that says so (fail closed).
"""

from __future__ import annotations

import json
import logging
import os
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cordum.policy import (
    Call,
    LimitsTracker,
    SessionFlows,
    args_digest,
    compile_policy,
    evaluate,
    label_origin,
    load_policy_file,
    local_version,
    policy_from_dict,
    redact_arguments,
    redact_target,
)
from cordum.policy.flows import flow_facts
from cordum.policy.model import ResultSettings
from cordum.policy.paths import decide_reaching, reached_paths, strictest
from cordum.policy.secrets import default_scanner, screen_result
from cordum.policy.toollock import ToolPins, apply_drift
from cordum.sidecar.approvals import (
    ApprovalResult,
    SessionGrant,
    SessionGrants,
    SpoolSessionGrants,
    session_grant_from,
)
from cordum.sidecar.ids import utc_now_rfc3339, uuid7_str
from cordum.sidecar.pinning import LISTING_META_PREFIX, drift_report
from cordum.sidecar.spool import Spool, outcome_record

log = logging.getLogger("cordum.sidecar.enforcer")

# Decision-record outcomes (contract); anything else (expired, cancelled) goes in a separate outcome record.
DECISION_OUTCOMES = {"approved", "denied", "timed_out", "executed", "failed", "blocked"}
# Outcomes after which the call goes on (it is forwarded next); every other outcome closes the call.
NON_FINAL_OUTCOMES = {"approved", "allowed_on_timeout"}
INTERRUPTED_FORWARDED = ("interrupted: the sidecar stopped (crash or kill) after forwarding the call and before "
                         "recording its result; whether it ran, and how, is unknown")
INTERRUPTED_HELD = ("interrupted: the sidecar stopped (crash or kill) while the call waited for approval; it was "
                    "never forwarded")


def _add_flow_facts(record: dict[str, Any], flow: dict | None, labels: tuple[str, ...]) -> None:
    if labels or flow is not None:
        record["facts"] = {**(record.get("facts") or {}), **flow_facts(flow, labels)}


class PolicyLoadError(Exception):
    pass


@dataclass
class LoadedPolicy:
    compiled: Any
    version: str
    sequence: int | None
    source: str
    limits: Any = None  # LimitsTracker
    flows: Any = None  # SessionFlows, when the policy has session data-flow rules (`labels`, `match.after`)


def _compile(policy: Any, version: str, *, sequence: int | None, source: str) -> LoadedPolicy:
    compiled = compile_policy(policy, version)
    return LoadedPolicy(compiled=compiled, version=version, sequence=sequence, source=source,
                        limits=LimitsTracker(compiled), flows=SessionFlows() if compiled.has_flows else None)


def policy_from_bundle(bundle: dict, *, source: str) -> LoadedPolicy:
    """Compile a bundle that has already been verified (the caller verifies signatures)."""
    manifest = bundle["manifest"]
    try:
        policy = policy_from_dict(bundle["policy"])
    except Exception as exc:  # a verified bundle that this engine cannot read: fail closed, say why
        raise PolicyLoadError(f"bundle {manifest.get('version')} could not be read: {exc}") from exc
    return _compile(policy, manifest["version"], sequence=manifest.get("sequence"), source=source)


def load_local_policy(path: str | os.PathLike[str], *, trusted_keys: dict[str, str]) -> LoadedPolicy:
    """`--bundle FILE`: a signed bundle JSON (verified against trusted keys) or a plain safety.yaml."""
    p = Path(os.path.expanduser(str(path)))
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyLoadError(f"cannot read policy file {p}: {exc.strerror}") from exc
    stripped = raw.lstrip()
    if stripped.startswith(b"{"):
        from cordum.sidecar.bundles import BundleError, bundle_verify

        try:
            bundle = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise PolicyLoadError(f"{p}: not valid JSON: {exc}") from exc
        if isinstance(bundle, dict) and "manifest" in bundle:
            try:
                bundle_verify(bundle, trusted_keys)
            except BundleError as exc:
                raise PolicyLoadError(f"bundle {p} refused: {exc}") from exc
            return policy_from_bundle(bundle, source=str(p))
    result = load_policy_file(str(p))
    if result.errors or result.policy is None:
        first = "; ".join(str(e) for e in list(result.errors)[:3]) or "no policy"
        raise PolicyLoadError(f"policy {p} is invalid: {first}")
    version = local_version(p, raw)
    return _compile(result.policy, version, sequence=None, source=str(p))


def _carry_flows(old: LoadedPolicy | None, loaded: LoadedPolicy | None) -> None:
    """A new policy version goes on with the session labels of the one it replaces (a session that read a
    secret still has); the same version re-announced keeps the same tracker."""
    if loaded is None or old is None or old.flows is None:
        return
    if old.version == loaded.version:
        loaded.flows = old.flows
    elif loaded.flows is not None:
        loaded.flows.carry_over(old.flows)


@dataclass
class Verdict:
    """One decided call and its evidence record (kept until the outcome is known)."""

    decision: str  # allow | require_approval | deny
    rule: str | None
    reason: str
    policy_version: str | None
    record: dict[str, Any]
    seq: int | None = None
    approval: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    unmapped: bool = False  # a tool the policy's map does not know, handed to the person at the terminal
    grant: SessionGrant | None = None  # the session answer that lets this held call through without asking
    session_id: str = ""
    sets_labels: tuple[str, ...] = ()  # session labels the call sets once it runs (`Enforcer.call_forwarded`)
    shadow_sets: tuple[str, ...] = ()  # the same under the shadow version (if it would not deny the call)

    @property
    def decision_id(self) -> str:
        return self.record["decision_id"]

    def deny_text(self) -> str:
        if self.policy_version is None:
            return f"Denied by Cordum: {self.reason}"
        return f"Denied by Cordum policy rule {self.rule or 'defaults.decision'}: {self.reason} (policy {self.policy_version})"


def _observed(reaches: dict[str, str] | None, grant: SessionGrant | None,
              facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The decision record's `facts` (and reviewer) beyond the decision itself: `facts` already found (a tool that
    drifted from tools.lock), the files the call's paths reach (the simulator replays them, having no file system
    of the agent's), and the session answer that lets a held call through (named from the first record on)."""
    facts = dict(facts or {})
    if reaches:
        facts["reaches"] = reaches
    if grant is None:
        return {"facts": facts} if facts else {}
    return {"facts": {**facts, "grant": grant.fact()}, "reviewer": grant.reviewer}


@dataclass
class Counters:
    allow: int = 0
    deny: int = 0
    require_approval: int = 0
    errors: int = 0

    def count(self, decision: str) -> None:
        """One more call decided `decision` (allow, deny or require_approval)."""
        setattr(self, decision, getattr(self, decision) + 1)

    def to_dict(self) -> dict[str, int]:
        return {"allow": self.allow, "deny": self.deny, "require_approval": self.require_approval,
                "errors": self.errors}


class Enforcer:
    """Decides calls against the policy in force, spools one record per call, and records outcomes."""

    telemetry = None  # a sidecar.telemetry.Telemetry when OTLP or Prometheus is on (runtime sets it); None costs nothing

    def __init__(self, *, spool: Spool, agent: str, environment: str, team: str | None, sidecar_id: str,
                 on_record=None, root: str | None = None):
        self.spool = spool
        self.root = root if root is not None else os.getcwd()
        self.agent = agent
        self.environment = environment
        self.team = team
        self.sidecar_id = sidecar_id
        self.on_record = on_record  # e.g. uploader.notify
        self.primary: LoadedPolicy | None = None
        self.shadow: LoadedPolicy | None = None
        self.no_policy_reason = "no valid policy bundle is loaded"
        self.no_policy_detail = None  # optional callable -> str|None (e.g. the bundle client's last error)
        self.counters = Counters()
        self.pins = ToolPins()
        self.on_drift = None  # called with new drift reports (list of dicts), e.g. DriftReporter.submit
        self.relays: weakref.WeakSet = weakref.WeakSet()  # agent sessions, told when a new lock changes their tools
        self._listings_kept: dict[str, str] = {}  # server -> digest of the listing last kept in the spool
        self.grants: SessionGrants | SpoolSessionGrants = SessionGrants()  # "approve for this session" answers

    # -- the policy in force --------------------------------------------------------------------

    def set_policy(self, loaded: LoadedPolicy | None, *, reason: str | None = None) -> None:
        old = self.primary
        if loaded is not None and old is not None and old.limits is not None:
            if old.version == loaded.version:
                loaded.limits = old.limits  # same version re-announced: the same tracker
            elif loaded.limits is not None:
                loaded.limits.carry_over(old.limits)  # a new version: running sessions keep their counts
        _carry_flows(old, loaded)
        shown = (self.pins.generation, self._on_tool_drift())
        self.primary = loaded
        self._report_drifts(self.pins.set_lock(loaded.compiled.policy.tools_lock if loaded is not None else None))
        if (self.pins.generation, self._on_tool_drift()) != shown:  # what each agent was shown may have changed
            for relay in list(self.relays):
                relay.tools_changed()
        if reason:
            self.no_policy_reason = reason
        log.info("policy in force", extra={"policy_version": loaded.version if loaded else None,
                                           "source": loaded.source if loaded else None, "reason": reason})

    def set_shadow(self, loaded: LoadedPolicy | None) -> None:
        _carry_flows(self.shadow, loaded)
        self.shadow = loaded

    # -- tool pinning ---------------------------------------------------------------------------

    def _on_tool_drift(self) -> str:
        return self.primary.compiled.policy.on_tool_drift if self.primary is not None else "deny"

    def _report_drifts(self, drifts: list) -> None:
        if not drifts:
            return
        action = self._on_tool_drift()
        version = self.primary.version if self.primary is not None else None
        for drift in drifts:
            log.warning("tool drift", extra={"server": drift.server, "tool": drift.tool, "kind": drift.kind,
                                             "on_tool_drift": action, "detail": drift.describe()})
        if self.on_drift is not None:
            self.on_drift([drift_report(d, action=action, policy_version=version) for d in drifts])

    def screen_tools(self, server: str, tools: list[Any], *, complete: bool) -> list[Any] | None:
        """Compare one upstream's tools/list answer with the lock (digests computed here, once per listing) and
        report new drifts; returns the list to send instead (drifted tools taken out, under on_tool_drift: deny)
        or None to send it unchanged."""
        self._report_drifts(self.pins.observe(server, tools, complete=complete))
        if complete:
            self._remember_listing(server, tools)
        if self._on_tool_drift() != "deny":
            return None
        return self.pins.hidden(server, tools)

    def _remember_listing(self, server: str, tools: list[Any]) -> None:
        """Keep what the server really listed (before any tool is hidden) in the spool, once per new listing:
        `cordum policy lock --from-sidecar` pins from it."""
        digest = self.pins.listing_digest(server)
        if self._listings_kept.get(server) == digest:
            return
        self._listings_kept[server] = digest
        body = {"server": server, "listed_at": utc_now_rfc3339(), "tools": tools}
        try:
            self.spool.set_meta(f"{LISTING_META_PREFIX}{server}", json.dumps(body, ensure_ascii=False))
        except Exception:  # a full disk must not break the listing; the lock can still be written from the server
            log.exception("could not keep the tools/list answer in the spool", extra={"upstream": server})

    def _pinned(self, server: str, tool: str, facts: dict[str, Any], decision: str, rule: str | None, reason: str,
                approval: dict[str, Any]):
        """(decision, rule, reason, approval) once tool pinning had its say: a tool that differs from tools.lock is
        decided as on_tool_drift says (one dict lookup when the server is pinned), and `facts` records the drift."""
        drift = self.pins.drift(server, tool) if self.pins.active else None
        if drift is None:
            return decision, rule, reason, approval
        facts["tool_drift"] = drift.fact()
        return apply_drift(drift, on_tool_drift=self._on_tool_drift(), decision=decision, rule=rule, reason=reason,
                           approval=approval, default_approval=self.primary.compiled.default_approval)

    # -- deciding -------------------------------------------------------------------------------

    def decide(self, *, server: str, tool: str, arguments: dict[str, Any] | None, session_id: str,
               agent: str | None = None, root: str | None = None, extra: dict[str, Any] | None = None,
               ask_unmapped: bool = False) -> Verdict:
        """Decide one call and commit its evidence record to the spool before returning.

        `ask_unmapped` (agent hooks): a tool the tool map does not know and no rule decides is neither denied
        nor allowed in silence but asked about at the terminal, recorded as require_approval."""
        t0 = time.perf_counter_ns()
        arguments = arguments if isinstance(arguments, dict) else {}
        call = Call(server=server, tool=tool, arguments=arguments, agent=agent or self.agent, team=self.team or "",
                    environment=self.environment or "", root=root or self.root)
        primary = self.primary
        shadow_out: list[dict[str, Any]] = []
        unmapped = False
        sets_labels: tuple[str, ...] = ()
        shadow_sets: tuple[str, ...] = ()
        flow = None
        reaches: dict[str, str] = {}
        facts: dict[str, Any] = {}  # what the evidence says beyond the decision (never a value)
        if primary is None:
            detail = self.no_policy_detail() if self.no_policy_detail else None
            decision, rule, reason, version = "deny", None, (
                f"{self.no_policy_reason}{f' ({detail})' if detail else ''}; every call is denied until a valid "
                "policy is in force (fail closed)"
            ), None
            topic, risk_tags, target, action, approval = f"job.mcp-bridge.{server}.{tool}", [], "", f"{server}.{tool}", {}
            redacted = {"_redacted": "no policy in force"}
        else:
            try:
                # judged by the path the call names and by the file it really reaches, whichever is stricter
                reaches = reached_paths(call)
                if primary.flows is None:  # no session data-flow rules: nothing more per call
                    d = strictest(evaluate(primary.compiled, call), call, lambda c: evaluate(primary.compiled, c),
                                  reaches)
                else:  # the labels are those of the path named and of the file reached (a symlink to .env)
                    d = decide_reaching(primary.compiled, call, reaches, primary.flows.labels(session_id))
                    sets_labels, flow = d.labels, d.flow
                if primary.limits is not None and d.decision != "deny":
                    limited = primary.limits.check(session_id, d, time.time())
                    if limited is not None:
                        d = limited
                decision, rule, reason = d.decision, d.rule, d.reason or ""
                unmapped = ask_unmapped and d.unmapped
                if unmapped:
                    decision = "require_approval"
                version = d.policy_version or primary.version
                topic, risk_tags = d.topic, list(d.risk_tags)
                target, action = d.target or "", d.action or f"{server}.{tool}"
                approval = dict(d.approval) if d.approval else {}
                for s in d.shadow:
                    shadow_out.append({"rule": s.get("rule"), "decision": s.get("decision"), "policy_version": version})
                redacted = redact_arguments(primary.compiled, call)
                target = redact_target(primary.compiled, target, arguments)
                decision, rule, reason, approval = self._pinned(server, tool, facts, decision, rule, reason, approval)
            except Exception as exc:  # an engine failure must never let a call through
                log.exception("policy evaluation failed; denying")
                self.counters.errors += 1
                decision, rule, version = "deny", None, primary.version
                reason = f"policy evaluation failed ({type(exc).__name__}); denied (fail closed)"
                topic, risk_tags, target, action, approval = f"job.mcp-bridge.{server}.{tool}", [], "", f"{server}.{tool}", {}
                redacted = {"_redacted": "evaluation failed"}
            if self.shadow is not None:
                shadow_sets = self._decide_shadow(self.shadow, call, session_id, shadow_out)
        grant = self._use_grant(decision=decision, unmapped=unmapped, session_id=session_id, rule=rule, server=server,
                                tool=tool, target=target)
        latency_us = (time.perf_counter_ns() - t0) // 1000
        record = {
            "record_type": "decision",
            "decision_id": uuid7_str(),
            "agent": agent or self.agent,
            "session_id": session_id,
            "team": self.team,
            "environment": self.environment,
            "action": action,
            "target": target,
            "server": server,
            "tool": tool,
            "args_digest": args_digest(arguments),
            "args": redacted,
            "topic": topic,
            "risk_tags": risk_tags,
            "decision": decision,
            "rule": rule,
            "reason": reason,
            "policy_version": version,
            "mode": "enforce",
            "shadow": shadow_out,
            "reviewer": None,
            "outcome": "blocked" if decision == "deny" else None,
            "timestamp": utc_now_rfc3339(),
            "latency_us": latency_us,
            "sidecar_id": self.sidecar_id,
            "root": call.root,  # what "{root}" and relative paths meant for this decision (replayed by simulation)
        }
        record.update(_observed(reaches, grant, facts))
        # `flow` only when its rule decided (a limit may have denied the call instead)
        _add_flow_facts(record, flow if flow and flow["rule"] == rule else None,
                        sets_labels if decision != "deny" else ())
        if extra:
            record.update(extra)
        verdict = Verdict(decision=decision, rule=rule, reason=reason, policy_version=version, record=record,
                          approval=approval, unmapped=unmapped, grant=grant, session_id=session_id,
                          sets_labels=sets_labels if decision != "deny" else (), shadow_sets=shadow_sets)
        self.counters.count(decision)
        verdict.seq = self.spool.add(record)
        if self.on_record is not None:
            self.on_record()
        if self.telemetry is not None:
            self.telemetry.decided(record)
        return verdict

    # -- session answers -------------------------------------------------------------------------

    def learn_grant(self, verdict: Verdict, result: ApprovalResult, session_id: str) -> SessionGrant | None:
        """Keep a reviewer's "approve for this session" answer for `session_id` (None for any other answer)."""
        grant = session_grant_from(result, verdict.record, verdict.approval or {}, now=self.grants.clock())
        if grant is not None:
            self.grants.add(session_id, grant)
            log.info("session approval in force", extra={"approval_id": grant.approval_id, "rule": grant.rule,
                                                          "session_id": session_id, "max_calls": grant.max_calls})
        return grant

    def _use_grant(self, *, decision: str, unmapped: bool, session_id: str, rule: str | None, server: str,
                   tool: str, target: str) -> SessionGrant | None:
        if decision != "require_approval" or unmapped:
            return None
        return self.grants.use(session_id, rule=rule, server=server, tool=tool, target=target)

    def pass_by_grant(self, verdict: Verdict) -> bool:
        """A held call that a session answer covers (its decision record already names the grant: approval id
        and reviewer) is recorded approved by that answer: True, forward it. False: it must be asked about."""
        grant = verdict.grant
        if grant is None:
            return False
        self.record_outcome(verdict, "approved", reviewer=grant.reviewer, comment=grant.comment())
        return True

    @staticmethod
    def _decide_shadow(shadow: LoadedPolicy, call: Call, session_id: str, shadow_out: list) -> tuple[str, ...]:
        """What the shadow version would decide (appended to `shadow_out`); the labels it would set."""
        try:
            flows = shadow.flows  # the shadow version keeps its own session labels
            sd = evaluate(shadow.compiled, call, flows.labels(session_id) if flows else None)
        except Exception:
            log.exception("shadow policy evaluation failed")
            return ()
        shadow_out.append({"rule": sd.rule, "decision": sd.decision,
                           "policy_version": sd.policy_version or shadow.version})
        return sd.labels if sd.decision != "deny" else ()

    def call_forwarded(self, verdict: Verdict) -> list[str]:
        """The call goes to its server now: the session labels it sets hold for the session's later calls
        (labels are set by calls that run, never by denied ones). Returns the labels newly set."""
        loaded, shadow = self.primary, self.shadow
        if not (verdict.sets_labels or verdict.shadow_sets):
            return []
        r = verdict.record
        origin = label_origin(decision_id=verdict.decision_id, server=r.get("server") or "", tool=r.get("tool") or "",
                              target=r.get("target") or "", timestamp=r.get("timestamp") or "")
        if shadow is not None and shadow.flows is not None and verdict.shadow_sets:
            shadow.flows.record(verdict.session_id, verdict.shadow_sets, origin)
        if not verdict.sets_labels or loaded is None or loaded.flows is None:
            return []
        return loaded.flows.record(verdict.session_id, verdict.sets_labels, origin)

    def end_session(self, session_id: str) -> None:
        """The agent session is over (its HTTP session closed): forget its session labels."""
        for loaded in (self.primary, self.shadow):
            if loaded is not None and loaded.flows is not None:
                loaded.flows.end_session(session_id)

    # -- tool results -----------------------------------------------------------------------------

    def _result_settings(self) -> ResultSettings:
        return self.primary.compiled.policy.results if self.primary is not None else ResultSettings()

    def screen_result(self, result: dict[str, Any]):
        """(result to send instead or None, Counter of secret kinds): the policy in force decides."""
        return screen_result(result, self._result_settings())

    def mask(self, text: str) -> str:
        """Free text (an error message from the upstream) with secrets masked, for the evidence."""
        return default_scanner(self._result_settings().patterns).mask(text)[0]

    # -- outcomes -------------------------------------------------------------------------------

    def record_outcome(self, verdict: Verdict, outcome: str, *, reviewer: str | None = None, comment: str = "",
                       error: str = "", in_decision: bool = True, facts: dict[str, Any] | None = None) -> None:
        """Fold the outcome into the spooled decision record if it has not been uploaded yet, else (or when
        `in_decision` is False) spool a separate outcome record. `facts`: what was observed about the result
        (secrets masked: kinds and counts)."""
        duration_ms = int((time.monotonic() - verdict.started) * 1000)
        final = outcome not in NON_FINAL_OUTCOMES
        if self.telemetry is not None:
            self.telemetry.outcome(verdict.record, outcome, final=final, facts=facts)
        if in_decision and outcome in DECISION_OUTCOMES and verdict.record.get("outcome") is None \
                and verdict.seq is not None:
            updated = dict(verdict.record, outcome=outcome)
            if reviewer is not None:
                updated["reviewer"] = reviewer
            if facts:
                updated["facts"] = {**(updated.get("facts") or {}), **facts}
            verdict.record = updated
            # folded into the decision record if it is still waiting in the spool (the usual case: the outcome
            # record below is then never built), else its own record
            if self.spool.merge_outcome(verdict.seq, updated, final=final):
                return
        self.spool.add_outcome(verdict.seq, outcome_record(verdict.decision_id, outcome, reviewer=reviewer,
                                                          comment=comment, error=error, duration_ms=duration_ms,
                                                          facts=facts),
                               final=final)
        if self.on_record is not None:
            self.on_record()

    def recover_interrupted(self) -> int:
        """Append the missing outcome of every call a dead sidecar left open (kill -9, crash, power loss
        after the decision reached the disk): `unknown` for a forwarded call (it may have run, or failed: only
        the upstream knows, so claiming either would be false evidence), `cancelled` for one that was still
        waiting for approval. Returns how many were closed."""
        orphans = self.spool.orphaned_calls()
        for seq, record, state in orphans:
            forwarded = state != 1
            self.spool.add_outcome(seq, outcome_record(
                record["decision_id"], "unknown" if forwarded else "cancelled",
                comment="" if forwarded else INTERRUPTED_HELD, error=INTERRUPTED_FORWARDED if forwarded else ""))
        if orphans:
            log.warning("closed calls an earlier sidecar left open", extra={"calls": len(orphans)})
            if self.on_record is not None:
                self.on_record()
        return len(orphans)
