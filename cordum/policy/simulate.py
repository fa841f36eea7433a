"""Replay recorded calls through a candidate policy: the pure core behind `cordum simulate` and the web.

Both the CLI (records from an evidence export, JSONL) and the control plane (rows grouped in SQL and
streamed from PostgreSQL) feed the same `Replay` accumulator, so they produce the same report.

Speed comes from grouping: calls with the same signature — (server, tool, args_digest, agent, team,
environment, root) — get the same decision from a stateless policy, so each distinct signature is evaluated
once and its decision is applied to every call in the group (`Replay.add(..., count=n)`).

Limits (session max_calls/max_duration/max_writes, rate per_minute, per-rule limits) are state: the
decision of a call depends on the calls before it in its session. When the candidate (or the baseline
policy) has limits, callers feed every call one by one in (session_id, timestamp) order through
`Replay.add_call`; the signature's evaluation is still cached, and only the engine's `LimitsTracker`
runs per call. Without limits the grouped path is exact.

Most sessions never come near a limit, though. `Replay.session_may_be_limited` asks each tracker
(`LimitsTracker.may_limit`, the engine's own conservative answer) whether a session with given call
count, write count, duration and busiest 10 minutes could have any call denied; sessions it rules out are
folded per group without the tracker (`Replay.add_unlimited`), exactly as feeding them call by call would,
and only the others are replayed in order.

Session data-flow rules (`labels`, rules with `match.after`) are state too: a call's labels, set when a
replayed policy does not deny it, decide later calls of its session. Sessions with a call that may set a
label (`Replay.may_set_labels`) are replayed in order with each policy's labels; the others are decided as
without flow rules (and prefiltered for limits as above).

"Before" is the decision actually recorded, unless a baseline policy is given: then it is that
policy's decision for the same call (to isolate what the candidate changes from drift between
the versions that made the recorded decisions). With recorded decisions as "before", a `reference`
policy (the live version) may be given too: the report's `drift` then says how many of the changed calls
the reference already decides the way the candidate does (drift between the versions that recorded the
calls and the live one) and how many change because of the candidate itself.

Sample records: a sample key is the record's chain position `seq` (in the evidence export; without it,
its line number). For each (signature, recorded decision, UTC day) group, its first and last record are
candidates, and each report group keeps the earliest few of those; in call-order mode the same holds per
(signature, before, after, deciding rule, day) fold. Plain integer min/max aggregates keep the SQL a cheap hash aggregate, and the in-memory path
applies exactly the same rule, so the CLI and the web show the same samples. `report(resolve=...)` turns
sample keys into decision ids.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .model import DECISION_RANK, DECISIONS

RANK = DECISION_RANK
DEFAULT_RULE = "(default)"
SAMPLES_PER_GROUP = 3
MAX_CHANGED_CALLS = 200
TOP_RULES = 10
# The limits prefilter counts a session's calls per epoch-aligned period of this many seconds (its busiest
# period bounds its calls per minute); 10 minutes keeps the SQL aggregate small.
BUSY_PERIOD = 600

# (server, tool, args_digest, agent, team, environment, root): root is the working root the sidecar decided
# against ("{root}" and relative paths resolve against it; "" for records made before it was recorded)
Signature = tuple[str, str, str, str, str, str, str]

__all__ = [
    "DECISIONS",
    "Replay",
    "has_flows",
    "has_limits",
    "record_input",
    "record_signature",
    "record_day",
    "simulate_records",
    "read_jsonl",
]


def has_flows(compiled: Any) -> bool:
    """True when the policy has session data-flow rules (`labels`, rules with `match.after`)."""
    return bool(getattr(compiled, "has_flows", False))


def has_limits(compiled: Any) -> bool:
    """True when the policy's decisions depend on earlier calls in a session (any limit set)."""
    policy = getattr(compiled, "policy", compiled)
    limits = getattr(policy, "limits", None)
    if limits is not None:
        s, r = limits.session, limits.rate
        if any(v is not None for v in (s.max_calls, s.max_duration, s.max_writes, r.per_minute)):
            return True
    return any(getattr(rule, "limits", None) is not None for rule in getattr(policy, "rules", ()))


def _parse_ts(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        ts = value
    else:
        ts = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC)


_DAY_CACHE: dict[int, str] = {}


def _epoch_day(epoch: float) -> str:
    n = int(epoch // 86400)
    day = _DAY_CACHE.get(n)
    if day is None:
        day = _DAY_CACHE[n] = (dt.date(1970, 1, 1) + dt.timedelta(days=n)).isoformat()
    return day


def record_day(record: dict) -> str:
    return _parse_ts(record["timestamp"]).date().isoformat()


def _args_of(record: dict) -> dict:
    args = record.get("args", record.get("arguments"))
    if isinstance(args, str):
        args = json.loads(args) if args else {}
    return args or {}


def _reaches_of(record: dict) -> dict:
    """What the call's path arguments really reached when it was decided (`facts.reaches`, from the sidecar)."""
    facts = record.get("facts")
    if isinstance(facts, str):
        facts = json.loads(facts) if facts else {}
    reaches = facts.get("reaches") if isinstance(facts, dict) else None
    return reaches if isinstance(reaches, dict) else {}


def record_input(record: dict) -> tuple[dict, dict]:
    return _args_of(record), _reaches_of(record)


def record_signature(record: dict) -> Signature:
    digest = record.get("args_digest") or ""
    if not digest:
        from cordum.policy import args_digest

        digest = args_digest(_args_of(record))
    return (
        record.get("server") or "",
        record.get("tool") or "",
        digest,
        record.get("agent") or "",
        record.get("team") or "",
        record.get("environment") or "",
        record.get("root") or "",
    )


def _shadow_rules(decision: Any) -> list[str]:
    out = []
    for item in getattr(decision, "shadow", None) or ():
        rule = item.get("rule") if isinstance(item, dict) else getattr(item, "rule", None)
        if rule:
            out.append(rule)
    return out


class _Eval:
    """The cached outcome of one signature under one policy."""

    __slots__ = ("decision", "rule", "matched", "obj")

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.decision = obj.decision
        self.rule = obj.rule or DEFAULT_RULE
        self.matched = tuple(dict.fromkeys((*(getattr(obj, "matched", None) or ()), *_shadow_rules(obj))))


def _merge_samples(current: list, new: list, limit: int) -> list:
    if not new:
        return current
    return heapq.nsmallest(limit, set(current).union(new))


class Replay:
    """Accumulates the report. Feed groups with `add` or single calls (in session order) with `add_call`."""

    def __init__(
        self,
        candidate: Any,
        *,
        baseline: Any = None,
        reference: Any = None,
        samples_per_group: int = SAMPLES_PER_GROUP,
        max_changed_calls: int = MAX_CHANGED_CALLS,
    ) -> None:
        from cordum.policy import evaluate

        self._evaluate = evaluate
        self.candidate = candidate
        self.baseline = baseline
        self.reference = reference if baseline is None else None
        self.also_in_reference = 0
        self.samples_per_group = samples_per_group
        self.max_changed_calls = max_changed_calls
        policies = (candidate, baseline, self.reference)
        # Session data-flow: a call's decision depends on the labels earlier calls of its session set, so sessions
        # that may hold a label are replayed in order and a signature is re-evaluated per set of labels held.
        self.flows_replayed = any(p is not None and has_flows(p) for p in policies)
        self.needs_call_order = self.flows_replayed or any(p is not None and has_limits(p) for p in policies)
        self._calls: dict[Signature, tuple] = {}  # with flows only: each signature's (call, reaches), to re-evaluate
        self._flow_cache: dict[tuple, _Eval] = {}
        self._flow_session: tuple[Any, list[set]] = (object(), [set(), set(), set()])  # session, labels per policy
        self._trackers: dict[str, Any] = {}
        if self.needs_call_order:
            from cordum.policy import LimitsTracker

            self._trackers["candidate"] = LimitsTracker(candidate)
            if baseline is not None:
                self._trackers["baseline"] = LimitsTracker(baseline)
            if self.reference is not None:
                self._trackers["reference"] = LimitsTracker(self.reference)
        self._candidate_tracker = self._trackers.get("candidate")
        self._baseline_tracker = self._trackers.get("baseline")
        self._reference_tracker = self._trackers.get("reference")
        self._folds: dict[tuple, list] = {}
        self._cache: dict[Signature, tuple[_Eval, _Eval | None, _Eval | None]] = {}
        self.evaluations = 0
        self.total = 0
        self.matrix = {b: dict.fromkeys(DECISIONS, 0) for b in DECISIONS}
        self.rule_hits: Counter[str] = Counter()  # every candidate rule that matched (enforce or shadow)
        self.deciding_rules: Counter[str] = Counter()  # the rule that decided (incl. "(default)")
        self.per_day: dict[str, dict[str, int]] = defaultdict(lambda: {"calls": 0, "before": 0, "after": 0})
        self.by_rule: dict[tuple[str, str, str], dict] = {}
        self.by_agent: dict[tuple[str, str], dict] = {}
        self.changed: dict[tuple, dict] = {}
        self.by_topic: Counter[tuple[str, str, str]] = Counter()  # (candidate topic, before, after) -> changed calls

    # --- evaluation (once per distinct signature) -------------------------------------------------
    def _call(self, sig: Signature, args: dict) -> dict:
        server, tool, _digest, agent, team, environment, root = sig
        return {"server": server, "tool": tool, "arguments": args, "agent": agent, "team": team,
                "environment": environment, "root": root}

    def _decide(self, policy: Any, call: Any, reaches: dict, session: Any = None) -> Any:
        """As the sidecar decided: by the path named and by the file reached (as recorded), the stricter; in a
        session holding `session`'s labels, setting the labels of both."""
        from cordum.policy.paths import decide_reaching, strictest

        if policy.has_flows:
            return decide_reaching(policy, call, reaches, session)
        return strictest(self._evaluate(policy, call), call, lambda c: self._evaluate(policy, c), reaches)

    def evaluations_for(self, sig: Signature, args: Any, reaches: dict | None = None) -> tuple[_Eval, _Eval | None, _Eval | None]:
        """`args`: the recorded arguments (dict or JSON text), or a callable giving (arguments, reaches)."""
        cached = self._cache.get(sig)
        if cached is None:
            if callable(args):
                args, reaches = args()
            if isinstance(args, str):
                args = json.loads(args) if args else {}
            from cordum.policy import Call

            call = Call.from_dict(self._call(sig, args or {}))
            reaches = reaches or {}  # never the control plane's own file system
            if self.flows_replayed:
                self._calls[sig] = (call, reaches)
            cand = _Eval(self._decide(self.candidate, call, reaches))
            base = _Eval(self._decide(self.baseline, call, reaches)) if self.baseline is not None else None
            ref = _Eval(self._decide(self.reference, call, reaches)) if self.reference is not None else None
            self.evaluations += 1 + (base is not None) + (ref is not None)
            cached = self._cache[sig] = (cand, base, ref)
        return cached

    @property
    def evaluated(self) -> dict:
        """Signatures evaluated so far (read-only use)."""
        return self._cache

    @property
    def distinct_signatures(self) -> int:
        return len(self._cache)

    # --- feeding ----------------------------------------------------------------------------------
    def add(
        self,
        *,
        sig: Signature,
        args: Any,
        recorded: str,
        day: str,
        count: int,
        samples: Iterable = (),
    ) -> None:
        """A group of `count` identical calls recorded with decision `recorded` on `day` (stateless path)."""
        cand, base, ref = self.evaluations_for(sig, args)
        before = base.decision if base is not None else recorded
        self._tally(sig, before, cand.decision, cand.rule, cand.matched, day, count, samples,
                    ref.decision if ref is not None else None)

    def add_call(
        self,
        *,
        sig: Signature,
        args: Any,
        recorded: str,
        session_id: Any,
        timestamp: dt.datetime | str | float,
        sample: Any,
    ) -> None:
        """One call, fed in (session_id, timestamp) order, with limits replayed by the engine's tracker.

        `timestamp` may be a datetime, an RFC 3339 string or seconds since the epoch (UTC); `session_id`
        any hashable that identifies the session. Calls are folded per (signature, before, after, deciding
        rule, day), keeping that fold's first and last sample, and tallied when the report is made.
        """
        self.evaluations_for(sig, args)
        self.add_calls(((session_id, timestamp, sample, recorded, sig),))

    def add_calls(self, rows: Iterable[tuple]) -> int:
        """The hot loop of `add_call` for many calls: rows of (session, timestamp, sample, recorded, sig)
        in (session, time) order, every signature already evaluated. Returns the number of rows."""
        if self.flows_replayed:
            return self._add_calls_with_flows(rows)
        cache, folds, epoch_day = self._cache, self._folds, _epoch_day
        tracker, btracker, rtracker = self._candidate_tracker, self._baseline_tracker, self._reference_tracker
        n = 0
        for session_id, timestamp, sample, recorded, sig in rows:
            n += 1
            cand, base, ref = cache[sig]
            now = timestamp if isinstance(timestamp, float) else (
                float(timestamp) if isinstance(timestamp, int) else _parse_ts(timestamp).timestamp())
            after, rule = cand.decision, cand.rule
            if tracker is not None:
                limited = tracker.check(session_id, cand.obj, now)
                if limited is not None:
                    after, rule = limited.decision, limited.rule or DEFAULT_RULE
            if base is not None:
                before = base.decision
                if btracker is not None:
                    blimited = btracker.check(session_id, base.obj, now)
                    if blimited is not None:
                        before = blimited.decision
            else:
                before = recorded
            ref_after = None
            if ref is not None:
                ref_after = ref.decision
                if rtracker is not None:
                    rlimited = rtracker.check(session_id, ref.obj, now)
                    if rlimited is not None:
                        ref_after = rlimited.decision
            key = (sig, before, after, rule, epoch_day(now), ref_after)
            fold = folds.get(key)
            if fold is None:
                folds[key] = [1, sample, sample]
            else:
                fold[0] += 1
                if sample < fold[1]:
                    fold[1] = sample
                elif sample > fold[2]:
                    fold[2] = sample
        return n

    def _with_labels(self, which: int, policy: Any, sig: Signature, labels: set) -> _Eval:
        """The signature's evaluation under `policy` in a session holding `labels` (cached per label set)."""
        key = (which, sig, frozenset(labels))
        ev = self._flow_cache.get(key)
        if ev is None:
            call, reaches = self._calls[sig]
            ev = self._flow_cache[key] = _Eval(self._decide(policy, call, reaches, key[2]))
            self.evaluations += 1
        return ev

    def _add_calls_with_flows(self, rows: Iterable[tuple]) -> int:
        """`add_calls` for policies with session data-flow rules: per session (rows of one session are
        contiguous), each policy's labels grow with every call it does not deny, exactly as the sidecar's do
        when it forwards a call (a held call counts as approved, the stricter reading for what follows)."""
        policies = ((self.candidate, self._candidate_tracker), (self.baseline, self._baseline_tracker),
                    (self.reference, self._reference_tracker))
        current, held = self._flow_session  # carried between calls (add_call feeds one row at a time)
        n = 0
        for session_id, timestamp, sample, recorded, sig in rows:
            n += 1
            if session_id != current:
                current, held = session_id, [set(), set(), set()]
            now = timestamp if isinstance(timestamp, float) else (
                float(timestamp) if isinstance(timestamp, int) else _parse_ts(timestamp).timestamp())
            outs: list[tuple | None] = [None, None, None]
            for i, ev in enumerate(self._cache[sig]):
                if ev is None:
                    continue
                policy, tracker = policies[i]
                if held[i] and policy.flow_rules:
                    ev = self._with_labels(i, policy, sig, held[i])
                decision, rule = ev.decision, ev.rule
                if tracker is not None:
                    limited = tracker.check(session_id, ev.obj, now)
                    if limited is not None:
                        decision, rule = limited.decision, limited.rule or DEFAULT_RULE
                if decision != "deny" and ev.obj.labels:
                    held[i].update(ev.obj.labels)
                outs[i] = (decision, rule, ev)
            after, rule, ev = outs[0]
            before = outs[1][0] if outs[1] is not None else recorded
            ref_after = outs[2][0] if outs[2] is not None else None
            key = (sig, before, after, rule, _epoch_day(now), ref_after)
            if ev is not self._cache[sig][0]:  # decided with labels: what matched may differ, so fold apart
                key = (*key, ev.matched)
            fold = self._folds.get(key)
            if fold is None:
                self._folds[key] = [1, sample, sample]
            else:
                fold[0] += 1
                fold[1], fold[2] = min(fold[1], sample), max(fold[2], sample)
        self._flow_session = (current, held)
        return n

    # --- the limits prefilter: sessions no limit can touch need no per-call replay ---------------------
    def session_may_be_limited(
        self, *, calls: int, duration: float, writes: int | None = None, busiest: tuple[int, float] | None = None,
        labelling: int | None = None,
    ) -> bool:
        """Whether any call of a session with these aggregates could be denied by a limit of any replayed
        policy (each tracker's `LimitsTracker.may_limit`; conservative), or decided by a session data-flow rule:
        with flow rules, `labelling` is how many of its calls may set a label (`may_set_labels`; None: unknown,
        so True). A session no call of which sets a label is decided as without flow rules."""
        if self.flows_replayed and (labelling is None or labelling > 0):
            return True
        return any(
            t.may_limit(calls=calls, duration=duration, writes=writes, busiest=busiest)
            for t in self._trackers.values()
        )

    def may_set_labels(self, sig: Signature) -> bool:
        """The (evaluated) signature could set the first session label under some replayed policy: it matches a
        `labels` entry and that policy does not deny it while the session holds no label. A session with no
        such call never holds a label (its first label would need one), so it is decided as without flow rules,
        even though later calls of a labelled session may be decided differently (a flow rule that allows can
        replace a default deny)."""
        return any(e is not None and e.obj.labels and e.decision != "deny" for e in self._cache[sig])

    def counts_as_write(self, sig: Signature) -> bool:
        """The (evaluated) signature may count towards max_writes for some replayed policy: a write that policy
        does not deny (denied calls are never counted by the tracker)."""
        return any(e is not None and e.obj.is_write and e.decision != "deny" for e in self._cache[sig])

    def add_unlimited(self, *, sig: Signature, recorded: str, day: str, count: int, first: Any, last: Any) -> None:
        """`count` calls of sessions `session_may_be_limited` ruled out, with sample keys from `first` to
        `last`: folded exactly as `add_calls` would fold them (no tracker can deny any of them, and a fold
        only keeps its count and first/last sample, so the order of feeding does not matter)."""
        cand, base, ref = self._cache[sig]
        before = base.decision if base is not None else recorded
        key = (sig, before, cand.decision, cand.rule, day, ref.decision if ref is not None else None)
        fold = self._folds.get(key)
        if fold is None:
            self._folds[key] = [count, first, last]
        else:
            fold[0] += count
            if first < fold[1]:
                fold[1] = first
            if last > fold[2]:
                fold[2] = last

    def _flush_folds(self) -> None:
        folds, self._folds = self._folds, {}
        for key, (count, first, last) in folds.items():
            sig, before, after, rule, day, ref_after = key[:6]
            matched = key[6] if len(key) > 6 else self._cache[sig][0].matched  # flows: what matched in session
            samples = () if first is None else ((first,) if first == last else (first, last))
            self._tally(sig, before, after, rule, matched, day, count, samples, ref_after)

    def _tally(self, sig, before, after, rule, matched, day, count, samples, ref_after=None) -> None:
        if before not in RANK:
            before = "deny"  # an unknown recorded value is treated as the fail-closed decision
        self.total += count
        self.matrix[before][after] += count
        for rid in matched:
            self.rule_hits[rid] += count
        self.deciding_rules[rule] += count
        d = self.per_day[day]
        d["calls"] += count
        if before == "require_approval":
            d["before"] += count
        if after == "require_approval":
            d["after"] += count
        if before == after:
            return
        if ref_after == after:
            self.also_in_reference += count
        cached = self._cache.get(sig)
        self.by_topic[(getattr(cached[0].obj, "topic", "") if cached else "") or "", before, after] += count
        limit = self.samples_per_group
        samples = list(samples)
        key = (rule, before, after)
        g = self.by_rule.get(key)
        if g is None:
            g = self.by_rule[key] = {"rule": rule, "before": before, "after": after, "count": 0, "samples": []}
        g["count"] += count
        g["samples"] = _merge_samples(g["samples"], samples, limit)
        akey = (sig[3], sig[4])
        a = self.by_agent.get(akey)
        if a is None:
            a = self.by_agent[akey] = {"agent": sig[3], "team": sig[4], "count": 0, "transitions": Counter(),
                                       "samples": []}
        a["count"] += count
        a["transitions"][f"{before}->{after}"] += count
        a["samples"] = _merge_samples(a["samples"], samples, limit)
        ckey = (sig, before, after, rule)
        c = self.changed.get(ckey)
        if c is None:
            c = self.changed[ckey] = {
                "server": sig[0], "tool": sig[1], "args_digest": sig[2], "agent": sig[3], "team": sig[4],
                "environment": sig[5], "root": sig[6], "before": before, "after": after, "rule": rule, "count": 0, "samples": [],
            }
        c["count"] += count
        c["samples"] = _merge_samples(c["samples"], samples, limit)

    # --- the report -------------------------------------------------------------------------------
    def sample_keys(self) -> set:
        self._flush_folds()
        keys: set = set()
        for groups in (self.by_rule, self.by_agent, self.changed):
            for g in groups.values():
                keys.update(g["samples"])
        return keys

    def report(self, *, resolve: Callable[[set], dict] | None = None) -> dict:
        """The report. `resolve(keys) -> {key: decision_id}` names the samples (default: key[1] of a
        (seq, decision_id) tuple, else str(key))."""
        self._flush_folds()
        if resolve is None:
            names = {k: (k[1] if isinstance(k, tuple) else str(k)) for k in self.sample_keys()}
        else:
            names = resolve(self.sample_keys())

        def named(group: dict) -> dict:
            return {**group, "samples": [names[k] for k in group["samples"] if k in names]}

        changed_total = sum(self.matrix[b][a] for b in DECISIONS for a in DECISIONS if a != b)
        newly = {a: sum(self.matrix[b][a] for b in DECISIONS if b != a) for a in DECISIONS}
        tightened = sum(self.matrix[b][a] for b in DECISIONS for a in DECISIONS if RANK[a] > RANK[b])
        policy = getattr(self.candidate, "policy", None)
        rule_ids = [r.id for r in getattr(policy, "rules", ())]
        hits = [{"rule": rid, "count": self.rule_hits.get(rid, 0)} for rid in rule_ids]
        top = sorted(
            ({"rule": r, "count": n} for r, n in self.deciding_rules.items()),
            key=lambda x: (-x["count"], x["rule"]),
        )[:TOP_RULES]
        days = sorted(self.per_day)
        per_day = [{"day": d, **self.per_day[d]} for d in days]
        n_days = max(len(days), 1)
        by_rule = sorted((named(g) for g in self.by_rule.values()),
                         key=lambda g: (-g["count"], g["rule"], g["before"], g["after"]))
        by_agent = sorted(
            (
                named({**a, "transitions": dict(sorted(a["transitions"].items()))})
                for a in self.by_agent.values()
            ),
            key=lambda g: (-g["count"], g["agent"], g["team"]),
        )
        changed = sorted(
            (named(c) for c in self.changed.values()),
            key=lambda c: (-c["count"], c["server"], c["tool"], c["agent"], c["team"], c["environment"],
                           c["args_digest"], c["before"], c["after"], c["rule"]),
        )
        drift = None
        if self.reference is not None:
            drift = {
                "reference_version": getattr(self.reference, "version", "") or "",
                "changed_calls": changed_total,
                "also_changed_by_reference": self.also_in_reference,
                "due_to_candidate": changed_total - self.also_in_reference,
            }
        return {
            "drift": drift,
            "summary": {
                "total_calls": self.total,
                "distinct_signatures": self.distinct_signatures,
                "changed_calls": changed_total,
                "unchanged_calls": self.total - changed_total,
                "newly_allowed": newly["allow"],
                "newly_require_approval": newly["require_approval"],
                "newly_denied": newly["deny"],
                "tightened": tightened,
                "loosened": changed_total - tightened,
                "limits_replayed": self.needs_call_order,
                "flows_replayed": self.flows_replayed,
                "baseline": "policy" if self.baseline is not None else "recorded",
                "candidate_version": getattr(self.candidate, "version", "") or "",
                "baseline_version": (getattr(self.baseline, "version", "") or "") if self.baseline is not None else "",
            },
            "matrix": {b: dict(self.matrix[b]) for b in DECISIONS},
            "changed_by_rule": by_rule,
            "changed_by_agent": by_agent,
            "changed_calls": changed[: self.max_changed_calls],
            "changed_calls_truncated": max(len(changed) - self.max_changed_calls, 0),
            "changed_by_topic": [{"topic": t, "before": b, "after": a, "count": n}
                                 for (t, b, a), n in sorted(self.by_topic.items(), key=lambda x: (-x[1], x[0]))],
            "rules": {
                "hits": hits,
                "dead": [h["rule"] for h in hits if h["count"] == 0],
                "top": top,
            },
            "approval_load": {
                "per_day": per_day,
                "avg_per_day_before": round(sum(p["before"] for p in per_day) / n_days, 2),
                "avg_per_day_after": round(sum(p["after"] for p in per_day) / n_days, 2),
            },
        }


# --- in-memory feeding (the CLI): the same grouping the SQL path does -----------------------------
RECORD_DECISIONS = ("allow", "require_approval", "deny")


def _decision_records(records: Iterable[dict], *, need_decision: bool = True) -> Iterator[dict]:
    """The decision records, each checked for what a replay needs (a clear error naming the record, not a
    KeyError): server, tool and timestamp and, unless a baseline policy is replayed, the recorded decision."""
    for line, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise ValueError(f"record {line}: expected a JSON object, got {type(record).__name__}")
        if record.get("record_type", "decision") != "decision":
            continue
        where = f"record {line}" + (f" ({record['decision_id']})" if record.get("decision_id") else "")
        missing = [k for k in ("server", "tool", "timestamp") if not record.get(k)]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(repr(k) for k in missing)}; replay needs the evidence "
                             "export's fields (server, tool, args, timestamp, decision)")
        if need_decision and record.get("decision") not in RECORD_DECISIONS:
            raise ValueError(f"{where}: 'decision' must be one of {', '.join(RECORD_DECISIONS)} (what was "
                             f"recorded), got {record.get('decision')!r}; or give --baseline to replay a policy")
        yield record if "seq" in record else {**record, "_line": line}


def _sample_key(record: dict) -> tuple[int, str]:
    """(seq, decision_id): the chain position orders samples exactly as the database does."""
    seq = record.get("seq")
    return (int(seq) if seq is not None else record["_line"], record.get("decision_id") or "")


def simulate_records(
    candidate: Any,
    records: Iterable[dict],
    *,
    baseline: Any = None,
    reference: Any = None,
    on_progress: Callable[[int], None] | None = None,
    samples_per_group: int = SAMPLES_PER_GROUP,
    prefilter: bool = True,
) -> dict:
    """Replay evidence-export records (dicts) and return the report.

    Without limits: records are grouped by (signature, recorded decision, day), as the SQL path does.
    With limits: sessions that `Replay.session_may_be_limited` rules out (from their call count, write
    count, duration and busiest 10 minutes) are folded without the tracker; the others are sorted by
    (session_id, timestamp, seq) and fed one by one. prefilter=False replays every session (for tests).
    """
    replay = Replay(candidate, baseline=baseline, reference=reference, samples_per_group=samples_per_group)
    seen = 0
    if replay.needs_call_order:
        decisions = list(_decision_records(records, need_decision=baseline is None))
        # session -> [calls, writes, first epoch, last epoch, Counter(period), calls that may set a label]
        sessions: dict[str, list] = {}
        for r in decisions:
            sig = record_signature(r)
            replay.evaluations_for(sig, lambda r=r: record_input(r))
            now = _parse_ts(r["timestamp"]).timestamp()
            s = sessions.get(r.get("session_id") or "")
            if s is None:
                s = sessions[r.get("session_id") or ""] = [0, 0, now, now, Counter(), 0]
            s[0] += 1
            s[1] += replay.counts_as_write(sig)
            s[5] += replay.flows_replayed and replay.may_set_labels(sig)
            s[2], s[3] = min(s[2], now), max(s[3], now)
            s[4][int(now // BUSY_PERIOD)] += 1
        replayed = {
            sid for sid, (calls, writes, first, last, periods, labelling) in sessions.items()
            if not prefilter or replay.session_may_be_limited(
                calls=calls, duration=last - first, writes=writes, busiest=(max(periods.values()), BUSY_PERIOD),
                labelling=labelling)
        }
        rows = sorted(
            (r for r in decisions if (r.get("session_id") or "") in replayed),
            key=lambda r: (r.get("session_id") or "", _parse_ts(r["timestamp"]), _sample_key(r)),
        )
        for r in decisions:
            if (r.get("session_id") or "") not in replayed:
                sample = _sample_key(r)
                replay.add_unlimited(sig=record_signature(r), recorded=r.get("decision") or "", day=record_day(r),
                                     count=1, first=sample, last=sample)
                seen += 1
                if on_progress and seen % 10000 == 0:
                    on_progress(seen)
        for r in rows:
            replay.add_call(
                sig=record_signature(r), args=lambda r=r: record_input(r), recorded=r.get("decision") or "",
                session_id=r.get("session_id") or "", timestamp=r["timestamp"], sample=_sample_key(r),
            )
            seen += 1
            if on_progress and seen % 10000 == 0:
                on_progress(seen)
    else:
        groups: dict[tuple, list] = {}
        for r in _decision_records(records, need_decision=baseline is None):
            key = (record_signature(r), r.get("decision") or "", record_day(r))
            g = groups.get(key)
            sample = _sample_key(r)
            if g is None:
                g = groups[key] = [r, 0, sample, sample]
            g[1] += 1
            if sample < g[2]:
                g[2] = sample
            if sample > g[3]:
                g[3] = sample
        for (sig, recorded, day), (first, count, low, high) in groups.items():
            replay.add(sig=sig, args=lambda r=first: record_input(r), recorded=recorded, day=day, count=count,
                       samples=list({low, high}))
            seen += count
            if on_progress:
                on_progress(seen)
    return replay.report()


def read_jsonl(path: str) -> Iterator[dict]:
    """Records from an evidence export (one JSON object per line; blank lines skipped)."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON: {exc.msg}") from exc


# --- the `cordum simulate` subcommand ------------------------------------------------------------
def add_arguments(parser) -> None:
    """Arguments of `cordum simulate` (an argparse parser or subparser)."""
    parser.add_argument("--policy", required=True, help="candidate safety.yaml")
    parser.add_argument("--calls", required=True, help="recorded calls, JSONL (the evidence export); - for stdin")
    parser.add_argument("--baseline", help="replay this safety.yaml as 'before' instead of the recorded decisions")
    parser.add_argument("--live", help="the live safety.yaml: report how many changes it already makes (drift) "
                        "and how many are the candidate's own (ignored with --baseline)")
    parser.add_argument("--fail-if-newly-denied-over", type=int, default=None, metavar="N",
                        help="exit 1 when more than N calls would newly be denied (for CI)")
    parser.add_argument("--summary-only", action="store_true", help="print only the summary and matrix")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _load_compiled(path: str, label: str):
    import sys

    from cordum.policy import compile_policy, load_policy_file

    result = load_policy_file(path)
    if result.errors or result.policy is None:
        for issue in result.errors:
            print(str(issue), file=sys.stderr)
        if not result.errors:
            print(f"{path}:1:1: invalid policy", file=sys.stderr)
        return None
    return compile_policy(result.policy, label)


def _counted(records: Iterable[dict], progress) -> Iterator[dict]:
    """The records, reporting how many were read (the CLI's first phase: parsing the export)."""
    n = 0
    for n, record in enumerate(records, 1):
        if n % 5000 == 0:
            progress(n)
        yield record
    progress.finish(n)


def run(args) -> int:
    """Run `cordum simulate`; prints the JSON report (stdout) with progress on stderr. Exit 0, 1 (gate failed)
    or 2 (bad input)."""
    import sys

    candidate = _load_compiled(args.policy, f"candidate:{args.policy}")
    if candidate is None:
        return 2
    reference = None
    if args.live and not args.baseline:
        reference = _load_compiled(args.live, f"live:{args.live}")
        if reference is None:
            return 2
    baseline = None
    if args.baseline:
        baseline = _load_compiled(args.baseline, f"baseline:{args.baseline}")
        if baseline is None:
            return 2
    from cordum.common.progress import TerminalProgress

    try:
        if args.calls == "-":
            records: Iterable[dict] = (json.loads(line) for line in sys.stdin if line.strip())
            total = None
        else:
            records = read_jsonl(args.calls)
            with open(args.calls, "rb") as fh:
                total = sum(1 for line in fh if line.strip())
        reading = TerminalProgress("simulate: reading", total=total, unit="records", enabled=not args.quiet)
        replaying = TerminalProgress("simulate: replaying", unit="calls", enabled=not args.quiet)
        report = simulate_records(candidate, _counted(records, reading), baseline=baseline, reference=reference,
                                  on_progress=replaying)
        replaying.finish(message="done")
    except (OSError, ValueError, KeyError) as exc:
        print(f"cordum simulate: {exc}", file=sys.stderr)
        return 2
    exit_code = 0
    if args.fail_if_newly_denied_over is not None:
        newly = report["summary"]["newly_denied"]
        passed = newly <= args.fail_if_newly_denied_over
        report["gate"] = {"fail_if_newly_denied_over": args.fail_if_newly_denied_over, "newly_denied": newly,
                          "passed": passed}
        exit_code = 0 if passed else 1
    if args.summary_only:
        report = {k: report[k] for k in ("summary", "matrix", "drift", "gate") if k in report}
    print(json.dumps(report, indent=2, sort_keys=False))
    return exit_code


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m cordum.policy.simulate ...`), the same as `cordum simulate`."""
    import argparse

    parser = argparse.ArgumentParser(prog="cordum simulate", description="Dry-run a candidate policy over "
                                     "recorded calls (an evidence export) and print a JSON report.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
