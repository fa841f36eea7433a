"""Reads for evidence. Every read goes through `evidence_visible` (who may see which team's records)."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

import orjson
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Min, Q, QuerySet
from django.db.models.functions import TruncDay, TruncHour

from cordum.accounts.models import Membership
from cordum.accounts.permissions import Perm
from cordum.common.errors import CordumError, NotFound
from cordum.decisions.choices import RecordType
from cordum.decisions.filters import apply_filters, parse_filters
from cordum.decisions.models import ChainCheckpoint, EvidenceRecord
from cordum.decisions.services import format_ts

EXPORT_FIELDS = (
    "record_id", "record_type", "decision_id", "seq", "recorded_at", "timestamp", "agent", "team",
    "environment", "session_id", "sidecar_id", "server", "tool", "action", "target", "topic", "risk_tags",
    "decision", "rule", "reason", "policy_version", "mode", "shadow", "outcome", "reviewer", "comment", "error",
    "root", "latency_us", "duration_ms", "args_digest", "args", "facts", "prev_hash", "hash",
)
# What the sidecar observed, lifted out of `facts` into fields of their own in the SIEM feed and the JSONL/CSV
# exports, so a SIEM can alert on them without parsing a nested object (and a CSV gets a column each): the
# kinds and counts of secrets masked in the result, whether the result was withheld, the session labels the call
# set, and for a call decided by a session data-flow rule, the label it waited for, that rule, and the earlier
# call (decision id) that set the label. `facts` stays as recorded (it is what the chain hashes).
SIEM_FACT_FIELDS = ("masked", "withheld", "labels", "flow_label", "flow_rule", "flow_set_by")
SIEM_EXPORT_FIELDS = (*EXPORT_FIELDS[:EXPORT_FIELDS.index("facts") + 1], *SIEM_FACT_FIELDS,
                      *EXPORT_FIELDS[EXPORT_FIELDS.index("facts") + 1:])


def team_scope(membership: Membership) -> list[int] | None:
    """None: every team. Otherwise the team ids the membership reads (Membership.team_scope states the rule)."""
    if not membership.has_perm(Perm.VIEW_OWN_TEAM):
        raise PermissionDenied("Your role does not allow reading evidence.")
    return membership.team_scope()


def evidence_visible(*, membership: Membership, scope: list[int] | None | bool = False) -> QuerySet[EvidenceRecord]:
    """The records this membership may read: those of the teams in its scope, and those of its own agents."""
    if scope is False:
        scope = team_scope(membership)
    qs = EvidenceRecord.objects.filter(organization_id=membership.organization_id)
    if scope is not None:
        qs = qs.filter(Q(team_id__in=scope) | Q(agent__owner_id=membership.user_id))
    return qs


def evidence_list(*, membership: Membership, filters: dict) -> QuerySet[EvidenceRecord]:
    """Filtered records, newest first (keyset order: timestamp, id)."""
    return apply_filters(evidence_visible(membership=membership), filters).order_by("-timestamp", "-id")


COUNT_CAP = 100_000  # as many as a streamed export takes; beyond: background export job
CHART_DEFAULT_DAYS = 14


def evidence_count(*, qs: QuerySet[EvidenceRecord], cap: int = COUNT_CAP) -> tuple[int, bool]:
    """(count, capped): exact up to `cap` matches, so the explorer stays fast on huge unfiltered ranges."""
    n = qs.order_by()[: cap + 1].count()
    return min(n, cap), n > cap


# --- keyset pagination -------------------------------------------------------------------------
def _encode(payload: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def _decode(cursor: str) -> dict:
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise CordumError("Invalid input: cursor: not a cursor this server issued.", {"field": "cursor"}) from None


@dataclass
class Page:
    records: list[EvidenceRecord]
    next_cursor: str | None


def evidence_page(*, qs: QuerySet[EvidenceRecord], cursor: str | None, size: int = 50) -> Page:
    """Keyset page over (timestamp desc, id desc): constant cost at any depth."""
    if cursor:
        key = _decode(cursor)
        try:
            ts, pk = dt.datetime.fromisoformat(key["t"]), int(key["i"])
        except (KeyError, ValueError, TypeError):
            raise CordumError("Invalid input: cursor: not a cursor this server issued.", {"field": "cursor"}) from None
        qs = qs.filter(Q(timestamp__lt=ts) | Q(timestamp=ts, id__lt=pk))
    records = list(qs[: size + 1])
    next_cursor = None
    if len(records) > size:
        records = records[:size]
        last = records[-1]
        next_cursor = _encode({"t": last.timestamp.isoformat(), "i": last.pk})
    return Page(records, next_cursor)


def evidence_siem_page(*, membership: Membership, filters, cursor: str | None, limit: int) -> dict:
    """Chain order (seq ascending) from a cursor: a SIEM resumes exactly where it stopped."""
    cleaned = parse_filters(filters)
    qs = apply_filters(evidence_visible(membership=membership), cleaned).order_by("seq")
    after = 0
    if cursor:
        try:
            after = int(_decode(cursor)["seq"])
        except (KeyError, ValueError, TypeError):
            raise CordumError("Invalid input: cursor: not a cursor this server issued.", {"field": "cursor"}) from None
    rows = list(qs.filter(seq__gt=after)[:limit])
    last = rows[-1].seq if rows else after
    return {
        "records": [evidence_export_dict(r) for r in rows],
        "next_cursor": _encode({"seq": last}),
        "has_more": len(rows) == limit,
    }


def attach_linked_outcomes(*, membership: Membership, records: list[EvidenceRecord]) -> None:
    """Give each decision record without an outcome of its own `linked_outcomes`: [(outcome, reviewer)] of the
    outcome records the sidecar or a reviewer sent later (approved by whom, executed...), in chain order."""
    ids = [r.decision_id for r in records if r.record_type == RecordType.DECISION and not r.outcome]
    linked: dict[str, list[tuple[str, str]]] = {}
    if ids:
        rows = (evidence_visible(membership=membership)
                .filter(record_type=RecordType.OUTCOME, decision_id__in=ids)
                .order_by("seq").values_list("decision_id", "outcome", "reviewer"))
        for decision_id, outcome, reviewer in rows:
            linked.setdefault(decision_id, []).append((outcome, reviewer or ""))
    for r in records:
        r.linked_outcomes = linked.get(r.decision_id, []) if r.record_type == RecordType.DECISION else []


# --- single records, sessions, chain -----------------------------------------------------------
def evidence_get(*, membership: Membership, pk: int) -> EvidenceRecord:
    record = evidence_visible(membership=membership).filter(pk=pk).first()
    if record is None:
        raise NotFound("No such evidence record.")
    return record


def evidence_linked(*, membership: Membership, record: EvidenceRecord) -> list[EvidenceRecord]:
    """Every record for the same decision_id (the decision and its appended outcomes), in chain order."""
    return list(
        evidence_visible(membership=membership).filter(decision_id=record.decision_id).order_by("seq")
    )


def evidence_flow(*, membership: Membership, record: EvidenceRecord) -> dict | None:
    """For a decision a session data-flow rule decided (`facts.flow`): the label, the rule, the earlier call that
    set the label (as recorded) and its decision record when this membership may read it (else None)."""
    flow = _facts_of(record).get("flow")
    if not isinstance(flow, dict):
        return None
    set_by = flow.get("set_by") or {}
    earlier = None
    if set_by.get("decision_id"):
        earlier = evidence_visible(membership=membership).filter(
            decision_id=set_by["decision_id"], record_type="decision").only("id", "seq").first()
    return {"label": flow.get("label"), "rule": flow.get("rule"), "set_by": set_by, "record": earlier}


def chain_neighbours(*, record: EvidenceRecord) -> dict:
    """Chain position of a record: its seq, the head's seq, and the ids of the previous/next links."""
    from cordum.decisions.models import ChainHead

    head = ChainHead.objects.filter(organization_id=record.organization_id).first()
    around = EvidenceRecord.objects.filter(organization_id=record.organization_id, seq__in=[record.seq - 1, record.seq + 1])
    by_seq = {r.seq: r for r in around.only("id", "seq", "hash", "team_id")}
    return {"seq": record.seq, "head_seq": head.seq if head else record.seq, "prev": by_seq.get(record.seq - 1),
            "next": by_seq.get(record.seq + 1)}


def session_timeline(*, membership: Membership, session_id: str) -> list[dict]:
    """Everything one agent session did, in order, with the gap to the next call and outcome durations."""
    visible = evidence_visible(membership=membership)
    decisions = list(
        visible.filter(session_id=session_id, record_type=RecordType.DECISION).order_by("timestamp", "seq")
    )
    # Outcome records uploaded later by the sidecar carry no session id: link them by decision_id.
    outcomes: dict[str, list[EvidenceRecord]] = {}
    ids = [r.decision_id for r in decisions]
    for start in range(0, len(ids), 1000):
        for r in visible.filter(record_type=RecordType.OUTCOME, decision_id__in=ids[start:start + 1000]).order_by("seq"):
            outcomes.setdefault(r.decision_id, []).append(r)
    timeline = []
    start = decisions[0].timestamp if decisions else None
    for index, r in enumerate(decisions):
        following = decisions[index + 1].timestamp if index + 1 < len(decisions) else None
        timeline.append({
            "record": r,
            "offset_s": (r.timestamp - start).total_seconds() if start else 0,
            "gap_s": (following - r.timestamp).total_seconds() if following else None,
            "outcomes": outcomes.get(r.decision_id, []),
            "labels": _facts_of(r).get("labels") or [],  # session data-flow labels the call set when it ran
        })
    return timeline


def _facts_of(record: EvidenceRecord) -> dict:
    try:
        facts = orjson.loads(record.facts) if record.facts else {}
    except orjson.JSONDecodeError:
        return {}
    return facts if isinstance(facts, dict) else {}


def checkpoints_for(*, organization_id: int) -> QuerySet[ChainCheckpoint]:
    return ChainCheckpoint.objects.filter(organization_id=organization_id).order_by("seq")


# --- charts ------------------------------------------------------------------------------------
def decision_counts(*, qs: QuerySet[EvidenceRecord], filters: dict) -> dict:
    """Decision records per hour (ranges up to 3 days) or per day, split by decision.

    Without a time filter the chart covers the last CHART_DEFAULT_DAYS days that have records (so the explorer
    stays fast on a long history); `window` says which range is drawn.
    """
    # Outcome records have decision "" and are skipped below; not filtering on record_type lets PostgreSQL
    # answer from the (organization, decision, timestamp) index alone.
    qs = qs.order_by()
    start, end = filters.get("start"), filters.get("end")
    if not end:
        end = qs.aggregate(last=Max("timestamp"))["last"]
    if end and not start:
        start = end - dt.timedelta(days=CHART_DEFAULT_DAYS)
        first = qs.filter(timestamp__gte=start).aggregate(first=Min("timestamp"))["first"]
        start = first or start
    if not start or not end:
        return {"unit": "day", "buckets": [], "window": None}
    qs = qs.filter(timestamp__gte=start, timestamp__lte=end)
    hourly = (end - start) <= dt.timedelta(days=3)
    trunc = TruncHour("timestamp") if hourly else TruncDay("timestamp")
    rows = qs.annotate(bucket=trunc).values("bucket", "decision").annotate(n=Count("*")).order_by("bucket")
    buckets: dict = {}
    for row in rows:
        if row["decision"]:
            buckets.setdefault(row["bucket"], {"allow": 0, "require_approval": 0, "deny": 0})[row["decision"]] = row["n"]
    return {"unit": "hour" if hourly else "day", "buckets": sorted(buckets.items()), "window": (start, end)}


# --- serialisation -----------------------------------------------------------------------------
def evidence_as_dict(r: EvidenceRecord) -> dict:
    return {
        "record_id": r.record_id, "record_type": r.record_type, "decision_id": r.decision_id, "seq": r.seq,
        "recorded_at": format_ts(r.recorded_at), "timestamp": format_ts(r.timestamp), "agent": r.agent_name,
        "team": r.team_slug, "environment": r.environment, "session_id": r.session_id, "sidecar_id": r.sidecar_id,
        "server": r.server, "tool": r.tool, "action": r.action, "target": r.target, "topic": r.topic,
        "risk_tags": r.risk_tags, "decision": r.decision or None, "rule": r.rule or None, "reason": r.reason,
        "policy_version": r.policy_version, "mode": r.mode or None, "shadow": r.shadow,
        "outcome": r.outcome or None, "reviewer": r.reviewer or None, "comment": r.comment, "error": r.error,
        "root": r.root, "latency_us": r.latency_us, "duration_ms": r.duration_ms, "args_digest": r.args_digest,
        "args": orjson.loads(r.args) if r.args else None, "facts": orjson.loads(r.facts) if r.facts else {},
        "prev_hash": r.prev_hash, "hash": r.hash,
    }


def siem_facts(facts: dict) -> dict:
    """The SIEM_FACT_FIELDS of a record from its `facts` (empty values when the fact is absent)."""
    flow = facts.get("flow") if isinstance(facts.get("flow"), dict) else {}
    set_by = flow.get("set_by") if isinstance(flow.get("set_by"), dict) else {}
    return {
        "masked": facts.get("masked") or {}, "withheld": bool(facts.get("withheld")),
        "labels": list(facts.get("labels") or []), "flow_label": flow.get("label"), "flow_rule": flow.get("rule"),
        "flow_set_by": set_by.get("decision_id"),
    }


def evidence_export_dict(r: EvidenceRecord) -> dict:
    """A record as the SIEM feed and the exports give it: every stored field, then the facts as fields."""
    data = evidence_as_dict(r)
    facts = siem_facts(data["facts"])
    return {k: facts[k] if k in facts else data[k] for k in SIEM_EXPORT_FIELDS}


def evidence_quarantine_list(*, organization_id: int):
    """The organisation's quarantined batches, oldest first, without their payloads (admin page, command)."""
    from cordum.decisions.models import IngestBatch

    return (IngestBatch.objects.filter(organization_id=organization_id).exclude(error="").select_related("agent")
            .defer("payload").order_by("id"))
