"""Writes for evidence: validate uploads, queue them durably, chain them in order (the single writer).

Pipeline: the API validates a batch (`records_validate`, or the msgspec fast path), then in the request's
transaction claims the records' idempotency keys (the unique constraint decides: a retried upload finds its
keys taken and stages nothing again) and stores the new records as one `IngestBatch` row; it enqueues
`evidence_ingest_task` after commit (`evidence_batch_enqueue`). Claiming in the web tier keeps that work
parallel and off the per-organisation critical section. The task (`evidence_ingest_pending`) locks the
organisation's `ChainHead`, drains pending batches of that organisation in one transaction (group commit),
hashes the records in order and COPYs them into the partitioned, append-only table, then deletes the batches.
Other apps append in-process with `evidence_append` (same writer, same chain; it claims its keys itself).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import operator
import re

import orjson
from django.conf import settings
from django.db import DataError, IntegrityError, ProgrammingError, connection, transaction
from django.utils import timezone

from cordum.accounts.models import Agent, Organization
from cordum.common import notify, telemetry
from cordum.common.errors import CordumError
from cordum.decisions import storage, upload
from cordum.decisions.choices import DecisionValue, Mode, Outcome, RecordType
from cordum.decisions.models import GENESIS_HASH, ChainHead, EvidenceRecord, IngestBatch
from cordum.policy.evidence import canonical_json  # the one canonical form: sorted keys, compact, UTF-8

logger = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 5000
DRAIN_MAX_RECORDS = 20000  # records chained per writer transaction (group commit across batches)
COPY_CHUNK_RECORDS = 1000  # COPY lines sent to PostgreSQL at a time while the writer keeps hashing

_DECISIONS = frozenset(str(v) for v in DecisionValue.values)
_OUTCOMES = frozenset(str(v) for v in Outcome.values)
_MODES = frozenset(str(v) for v in Mode.values)
# Optional string fields of an uploaded record -> max length (None: unbounded text).
_STR_FIELDS = {
    "session_id": 128, "sidecar_id": 128, "action": 200, "target": None, "server": 200, "tool": 200,
    "args_digest": 80, "topic": 300, "rule": 200, "reason": None, "policy_version": 200, "reviewer": 254,
    "comment": None, "error": None, "root": 1024,
}
_STR_ITEMS = tuple(_STR_FIELDS.items())
_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_MAX_INT = 2**63 - 1
assert upload.STR_FIELD_NAMES == tuple(_STR_FIELDS), "fast path mirrors the reference validator's fields"
assert all(
    (upload._Record.__annotations__[f] == upload._str(n)) for f, n in _STR_FIELDS.items()
), "fast path mirrors the reference validator's length limits"
_CONTEXT_FIELDS = ("agent_id", "agent_name", "team_id", "team_slug", "environment")


# --- canonical form and hashing ----------------------------------------------------------------
def format_ts(value: dt.datetime) -> str:
    """Canonical timestamp text: UTC, microseconds, 'Z' (what is hashed and exported)."""
    if value.utcoffset():
        value = value.astimezone(dt.UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def chain_hash(prev_hash: str, document: dict) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_json(document)).hexdigest()


CHAIN_COLUMNS = ("organization_id", "seq", "recorded_at")
BODY_COLUMNS = tuple(c for c in storage.COLUMNS if c not in (*CHAIN_COLUMNS, "prev_hash", "hash"))


def record_document(row: dict) -> dict:
    """The hashed document of a record: {"body": <the call's fields>, "chain": <org, seq, recorded_at>}.

    `row` holds column values either as validated (timestamps as canonical strings) or as read back from
    the database (datetimes); both give the same document. Splitting body and chain lets the API render
    the body's canonical bytes once, and the single writer only splice the chain part in:
    canonical_json(doc) == b'{"body":' + body + b',"chain":' + chain + b'}'.
    """
    body = {}
    for column in BODY_COLUMNS:
        value = row[column]
        if column in storage.HASHED_WHEN_SET and not value:
            continue
        body[column] = format_ts(value) if isinstance(value, dt.datetime) else value
    recorded_at = row["recorded_at"]
    return {"body": body, "chain": {
        "organization_id": row["organization_id"], "seq": row["seq"],
        "recorded_at": format_ts(recorded_at) if isinstance(recorded_at, dt.datetime) else recorded_at,
    }}


# --- validation --------------------------------------------------------------------------------
def _parse_ts(value, index: int) -> str:
    if type(value) is not str:
        raise _invalid(f"records[{index}].timestamp", "must be an RFC 3339 timestamp string.")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _invalid(f"records[{index}].timestamp", f"{value!r} is not an RFC 3339 timestamp.") from None
    if parsed.tzinfo is None:
        raise _invalid(f"records[{index}].timestamp", "must carry a UTC offset (e.g. 2026-01-01T12:00:00Z).")
    if parsed.utcoffset():
        try:
            parsed = parsed.astimezone(dt.UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise _invalid(f"records[{index}].timestamp", f"{value!r} is out of range in UTC.") from None
    return parsed.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _invalid(path: str, message: str) -> CordumError:
    return CordumError(f"Invalid input: {path}: {message}", {"field": path})


def _record_validate(raw, index: int, context: dict) -> tuple[str, dict]:  # noqa: C901 - the reference validator: one flat pass of field checks in the ingest hot loop; issue 19's contract module is to replace it
    """Validate and normalise one uploaded record. Returns (acknowledgement id, row without chain fields).

    This runs for every record of every upload (the web tier's hot loop): plain-str comparisons, no
    per-record string formatting unless there is an error to report.
    """
    if type(raw) is not dict:
        raise _invalid(f"records[{index}]", "must be an object.")
    get = raw.get
    record_type = get("record_type")
    if record_type != "decision" and record_type != "outcome":
        raise _invalid(f"records[{index}].record_type", f"must be 'decision' or 'outcome', got {record_type!r}.")
    decision_id = get("decision_id")
    if type(decision_id) is not str or not _ID_RE.match(decision_id):
        raise _invalid(f"records[{index}].decision_id",
                       "must be an id (a UUID): 1-64 letters, digits, '-', '_' or '.'.")
    row = {"record_type": record_type, "decision_id": decision_id, **context}
    for field, max_length in _STR_ITEMS:
        value = get(field)
        if value is None:
            row[field] = ""
        elif type(value) is str and (max_length is None or len(value) <= max_length):
            row[field] = value
        elif not isinstance(value, str):
            raise _invalid(f"records[{index}].{field}", "must be a string or null.")
        else:
            raise _invalid(f"records[{index}].{field}", f"must be at most {max_length} characters.")
    row["timestamp"] = _parse_ts(get("timestamp"), index)
    latency_us, duration_ms = get("latency_us"), get("duration_ms")
    if latency_us is not None and (type(latency_us) is not int or not 0 <= latency_us <= _MAX_INT):
        raise _invalid(f"records[{index}].latency_us", "must be a non-negative integer or null.")
    if duration_ms is not None and (type(duration_ms) is not int or not 0 <= duration_ms <= _MAX_INT):
        raise _invalid(f"records[{index}].duration_ms", "must be a non-negative integer or null.")
    row["latency_us"], row["duration_ms"] = latency_us, duration_ms
    row["facts"] = _facts_validate(get("facts"), index)
    outcome = get("outcome")
    if record_type == "decision":
        decision = get("decision")
        if not isinstance(decision, str) or decision not in _DECISIONS:  # a list or object is not hashable
            raise _invalid(f"records[{index}].decision",
                           f"must be one of allow, require_approval, deny; got {decision!r}.")
        if outcome is not None and (not isinstance(outcome, str) or outcome not in _OUTCOMES):
            raise _invalid(f"records[{index}].outcome", f"{outcome!r} is not a known outcome.")
        mode = get("mode") or "enforce"
        if not isinstance(mode, str) or mode not in _MODES:
            raise _invalid(f"records[{index}].mode", f"must be 'enforce' or 'shadow', got {mode!r}.")
        risk_tags = get("risk_tags") or []
        if type(risk_tags) is not list:
            raise _invalid(f"records[{index}].risk_tags", "must be a list of strings.")
        for tag in risk_tags:
            if type(tag) is not str:
                raise _invalid(f"records[{index}].risk_tags", "must be a list of strings.")
        shadow = get("shadow") or []
        if type(shadow) is not list or (shadow and not all(
            isinstance(s, dict) and all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in s.items())
            for s in shadow
        )):
            raise _invalid(f"records[{index}].shadow", "must be a list of {rule, decision, policy_version} objects.")
        args = get("args")
        if args is not None and type(args) is not dict:
            raise _invalid(f"records[{index}].args", "must be an object (the redacted arguments) or null.")
        row["decision"], row["outcome"], row["mode"] = decision, outcome or "", mode
        row["risk_tags"], row["shadow"] = risk_tags, shadow
        row["args"] = _dumps_sorted(args).decode() if args else ""
        return decision_id, row
    if not isinstance(outcome, str) or outcome not in _OUTCOMES:
        raise _invalid(f"records[{index}].outcome",
                       f"must be one of {', '.join(Outcome.values)}; got {outcome!r}.")
    row["decision"], row["outcome"], row["mode"] = "", outcome, ""
    row["risk_tags"], row["shadow"], row["args"] = [], [], ""
    return f"{decision_id}:{outcome}", row


_FACTS_MAX_BYTES = 4096


def _facts_validate(facts, index: int) -> str:
    """The optional `facts` of a record as canonical JSON text ("" when absent): only the shapes the sidecar
    sends, so nothing else rides into the evidence under that name."""
    if facts is None or facts == {}:
        return ""
    where = f"records[{index}].facts"
    if type(facts) is not dict:
        raise _invalid(where, "must be an object or null.")
    for key, value in facts.items():
        check = _FACT_CHECKS.get(key)
        if check is None:
            raise _invalid(f"{where}.{key}"[:200], f"is not a known fact (known: {', '.join(_FACT_CHECKS)}).")
        check(value, f"{where}.{key}")
    text = _dumps_sorted(facts).decode()
    if len(text) > _FACTS_MAX_BYTES:
        raise _invalid(where, f"must be at most {_FACTS_MAX_BYTES} bytes of JSON.")
    return text


def _masked_fact_validate(value, where: str) -> None:
    if type(value) is not dict or not all(
            type(k) is str and len(k) <= 100 and type(n) is int and 0 < n <= _MAX_INT for k, n in value.items()):
        raise _invalid(where, "must map each kind of secret masked to a positive count.")


def _withheld_fact_validate(value, where: str) -> None:
    if type(value) is not bool:
        raise _invalid(where, "must be true or false.")


def _reaches_fact_validate(value, where: str) -> None:
    if type(value) is not dict or not all(
            type(k) is str and len(k) <= 100 and type(p) is str and len(p) <= 1024 for k, p in value.items()):
        raise _invalid(where, "must map each path argument to the file it reached.")


def _labels_fact_validate(value, where: str) -> None:
    if type(value) is not list or not value or len(value) > 64 or not all(
            type(x) is str and 0 < len(x) <= 100 for x in value):
        raise _invalid(where, "must list the session labels the call sets (strings).")


_FLOW_ORIGIN_KEYS = ("decision_id", "server", "tool", "target", "timestamp")


def _flow_fact_validate(value, where: str) -> None:
    """`facts.flow`: the session label a rule waited for and the earlier call that set it (strings only)."""
    ok = type(value) is dict and set(value) == {"label", "rule", "set_by"} and all(
        type(value[k]) is str and 0 < len(value[k]) <= 200 for k in ("label", "rule"))
    set_by = value.get("set_by") if ok else None
    if not ok or type(set_by) is not dict or not set(set_by) <= set(_FLOW_ORIGIN_KEYS) or not all(
            type(v) is str and len(v) <= 300 for v in set_by.values()):
        raise _invalid(where, "must be {label, rule, set_by: {decision_id, server, tool, target, timestamp}}.")


_GRANT_FACT = {"approval_id": (str, 64), "reviewer": (str, 254), "scope": (str, 20), "use": (int, None),
               "max_calls": (int, None)}


def _grant_fact_validate(grant, where: str) -> None:
    """`facts.grant`: the session approval that let a held call through (approval id, reviewer, how many uses)."""
    if type(grant) is not dict or not {"approval_id", "scope"} <= set(grant):
        raise _invalid(where, "must be an object with approval_id and scope.")
    for key, value in grant.items():
        kind, limit = _GRANT_FACT.get(key, (None, None))
        if kind is None:
            raise _invalid(f"{where}.{key}"[:200], f"is not a known field (known: {', '.join(_GRANT_FACT)}).")
        if type(value) is not kind or (kind is str and len(value) > limit) or (kind is int and not 0 <= value <= _MAX_INT):
            raise _invalid(f"{where}.{key}", "has the wrong type or size.")


_DRIFT_KINDS = ("new", "changed", "removed")


def _tool_drift_fact_validate(value, where: str) -> None:
    """The called tool differed from tools.lock: {"kind", "locked": digest, "seen": digest} (never the text)."""
    if type(value) is not dict or value.get("kind") not in _DRIFT_KINDS or not set(value) <= {"kind", "locked", "seen"}:
        raise _invalid(where, f"must be {{kind: {'|'.join(_DRIFT_KINDS)}, locked: digest, seen: digest}}.")
    for side in ("locked", "seen"):
        digest = value.get(side)
        if digest is not None and not (type(digest) is str and digest.startswith("sha256:") and len(digest) == 71):
            raise _invalid(f"{where}.{side}", "must be a digest sha256:<64 hex digits>.")


# One check per kind of fact the sidecar sends (facts.<key>), in the order the error message names them.
_FACT_CHECKS = {"masked": _masked_fact_validate, "withheld": _withheld_fact_validate, "reaches": _reaches_fact_validate,
                "grant": _grant_fact_validate, "labels": _labels_fact_validate, "flow": _flow_fact_validate,
                "tool_drift": _tool_drift_fact_validate}


def _dumps_sorted(value) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def agent_context(agent: Agent | None) -> dict:
    """Who made the call, from the authenticated agent (never from the uploaded body)."""
    if agent is None:
        return {"agent_id": None, "agent_name": "", "team_id": None, "team_slug": "", "environment": ""}
    team = agent.team
    return {
        "agent_id": agent.pk, "agent_name": agent.name, "team_id": team.pk if team else None,
        "team_slug": team.slug if team else "", "environment": agent.environment,
    }


def records_validate(*, records, agent: Agent | None) -> tuple[list[str], list[dict]]:
    """Validate a whole upload; the first bad record raises a CordumError naming record and field."""
    if not isinstance(records, list):
        raise _invalid("records", "must be a list of evidence records.")
    if len(records) > MAX_BATCH_RECORDS:
        raise _invalid("records", f"at most {MAX_BATCH_RECORDS} records per upload.")
    context = agent_context(agent)
    ids, rows = [], []
    for index, raw in enumerate(records):
        record_id, row = _record_validate(raw, index, context)
        ids.append(record_id)
        rows.append(row)
    return ids, rows


# --- staged form -------------------------------------------------------------------------------
# A validated record is staged as three lines: its record id, the canonical JSON of its body (what is
# hashed), and the body columns already rendered as a PostgreSQL COPY text line. The single writer
# then only hashes and splices; it never parses or re-renders a record (the per-org critical section
# is the pipeline's bottleneck, so all per-record work that can run in parallel runs in the web tier).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_TEXT_COLUMNS = tuple(c for c in BODY_COLUMNS if c not in storage.INT_COLUMNS)
_INT_GETTER = operator.itemgetter(*storage.INT_COLUMNS)
_TEXT_GETTER = operator.itemgetter(*_TEXT_COLUMNS)
_LIST_POSITIONS = tuple(i for i, c in enumerate(_TEXT_COLUMNS) if c in storage.JSON_COLUMNS)
assert BODY_COLUMNS == (*storage.INT_COLUMNS, *_TEXT_COLUMNS), "COPY order: integers first, then text"


def _stage(record_id: str, row: dict, index: int) -> str:
    """Three staged lines: record id, canonical JSON of the body, the body columns as a COPY text fragment
    (integers first, then text, tab-separated)."""
    unset = [c for c in storage.HASHED_WHEN_SET if not row[c]]
    for column in unset:  # absent from the hashed document when empty (see storage.HASHED_WHEN_SET)
        del row[column]
    body = orjson.dumps(row, option=orjson.OPT_SORT_KEYS).decode()
    for column in unset:
        row[column] = ""
    ints = "\t".join(["\\N" if v is None else str(v) for v in _INT_GETTER(row)])
    texts = list(_TEXT_GETTER(row))
    for i in _LIST_POSITIONS:
        texts[i] = orjson.dumps(texts[i]).decode()
    if "\\u0000" in body:  # PostgreSQL text cannot hold NUL: refuse here rather than poison the writer
        field = next((k for k, v in row.items() if "\\u0000" in orjson.dumps(v).decode()), "?")
        raise _invalid(f"records[{index}].{field}", "must not contain NUL characters.")
    joined = "\x00".join(texts)  # NUL never occurs here (refused above): a safe separator
    if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
        joined = "\x00".join([t.translate(_COPY_ESCAPES) for t in texts])
    return f"{record_id}\n{body}\n{ints}\t" + joined.replace("\x00", "\t")


def stage_records(ids: list[str], rows: list[dict]) -> list[str]:
    """The staged lines of validated records, one string per record (see `_stage`)."""
    return [_stage(rid, row, i) for i, (rid, row) in enumerate(zip(ids, rows, strict=True))]


def _unstage(payload: bytes) -> list[tuple[str, str, str]]:
    lines = payload.decode().split("\n")
    return [(lines[i], lines[i + 1], lines[i + 2]) for i in range(0, len(lines) - 2, 3)]


# --- the durable queue -------------------------------------------------------------------------
def evidence_upload_enqueue(*, agent: Agent, body: bytes) -> list[str]:
    """API entry for a raw upload body `{"records": [...]}`: validate, stage, enqueue; return ack ids.

    A valid batch takes the msgspec fast path (`upload.stage_upload`); anything else is parsed with orjson
    and validated record by record by the reference validator, which names the bad record and field.
    """
    staged = upload.stage_upload(
        body, agent_context(agent), decisions=_DECISIONS, outcomes=_OUTCOMES, modes=_MODES,
        max_records=MAX_BATCH_RECORDS, stage=_stage,
    )
    if staged is not None:
        ids, lines = staged
        return _enqueue_staged(agent=agent, ids=ids, lines=lines)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CordumError(f"Invalid input: body is not valid JSON ({exc}).", {"field": "records"}) from None
    if not isinstance(data, dict) or "records" not in data:
        raise CordumError("Invalid input: records: this field is required.", {"field": "records"})
    return evidence_batch_enqueue(agent=agent, records=data["records"])


def evidence_batch_enqueue(*, agent: Agent, records) -> list[str]:
    """Validate parsed records, store the batch durably, enqueue the writer after commit; return ack ids."""
    ids, rows = records_validate(records=records, agent=agent)
    return _enqueue_staged(agent=agent, ids=ids, lines=stage_records(ids, rows))


def _enqueue_staged(*, agent: Agent, ids: list[str], lines: list[str]) -> list[str]:
    """Claim the records' keys and stage the new ones, in one transaction; return every acknowledged id.

    An id whose key is already taken is stored (or staged) already: it is acknowledged and not staged again,
    which is what makes a retried upload idempotent. Keys are claimed in sorted order (see `storage.claim_keys`),
    so concurrent uploads that share ids wait for each other instead of deadlocking; an upload whose
    transaction rolls back releases its keys with it.
    """
    from cordum.decisions.tasks import evidence_ingest_task

    if not ids:
        return ids
    _require_own_decisions(agent=agent, ids=ids)
    with transaction.atomic():
        new_ids = storage.claim_keys(organization_id=agent.organization_id, record_ids=ids)
        staged = []
        for record_id, line in zip(ids, lines, strict=True):
            if record_id in new_ids:
                new_ids.discard(record_id)  # an id repeated inside the upload is staged once
                staged.append(line)
        if staged:
            batch_id = storage.stage_insert(organization_id=agent.organization_id, agent_id=agent.pk,
                                            payload="\n".join(staged).encode(), record_count=len(staged))
            transaction.on_commit(lambda: _enqueue(evidence_ingest_task, batch_id))
        transaction.on_commit(lambda: telemetry.evidence_received(organization_id=agent.organization_id,
                                                                  records=len(ids), new=len(staged)))
    return ids


def _require_own_decisions(*, agent: Agent, ids: list[str]) -> None:
    """An agent closes only its own calls: an outcome for a decision another agent recorded is refused, naming it."""
    outcome_of = {rid.split(":", 1)[0]: i for i, rid in enumerate(ids) if ":" in rid}
    if not outcome_of:
        return
    foreign = (EvidenceRecord.objects.filter(organization_id=agent.organization_id, record_type=RecordType.DECISION,
                                              decision_id__in=list(outcome_of))
               .exclude(agent_id=agent.pk).values_list("decision_id", flat=True).first())
    if foreign is not None:
        raise CordumError(f"Invalid input: records[{outcome_of[foreign]}].decision_id: the decision was recorded by "
                          "another agent; an agent records outcomes only for its own calls.",
                          {"field": f"records[{outcome_of[foreign]}].decision_id"}, status_code=403)


def _without_foreign_outcomes(organization_id: int, entries: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """`_require_own_decisions` again where it cannot race: an outcome staged while its decision was itself still
    staged (not yet chained) by another agent passed the upload check; the writer, holding the chain head,
    drops it. Staged records come from agent uploads only, so each carries its agent (first body column)."""
    outcomes = {rid.split(":", 1)[0] for rid, _body, _tail in entries if ":" in rid}
    if not outcomes:
        return entries
    owner = {rid: tail.split("\t", 1)[0] for rid, _body, tail in entries if rid in outcomes}
    missing = outcomes - owner.keys()
    if missing:
        owner.update((d, str(a)) for d, a in EvidenceRecord.objects.filter(
            organization_id=organization_id, record_type=RecordType.DECISION, decision_id__in=missing,
        ).values_list("decision_id", "agent_id"))
    kept = []
    for entry in entries:
        record_id, _body, tail = entry
        decided_by = owner.get(record_id.split(":", 1)[0]) if ":" in record_id else None
        if decided_by is not None and decided_by != tail.split("\t", 1)[0]:
            logger.warning("evidence writer: dropped outcome %s of org %s: its decision was recorded by another "
                           "agent", record_id, organization_id)
            continue
        kept.append(entry)
    return kept


def _enqueue(task, batch_id: int) -> None:
    """The batch is committed (durable): a broker outage must not turn the 202 into a 500. The beat sweep
    (`evidence_ingest_sweep_task`) re-enqueues batches whose message never made it."""
    from kombu.exceptions import OperationalError as BrokerError

    try:
        task.delay(batch_id)
    except (BrokerError, OSError):
        logger.warning("evidence batch %s stored but not enqueued; the sweep will pick it up", batch_id, exc_info=True)


def evidence_ingest_pending(*, batch_id: int | None = None, organization_id: int | None = None) -> int:
    """The writer: chain every pending batch of the organisation (of `batch_id`), oldest first.

    Returns the number of new records written (0 when another run already took the batch). If the database
    refuses a group, its batches are retried one by one and a batch refused on its own is quarantined
    (`IngestBatch.error`), so the rest of the organisation's evidence keeps flowing.
    """
    if organization_id is None:
        organization_id = IngestBatch.objects.filter(pk=batch_id).values_list("organization_id", flat=True).first()
        if organization_id is None:
            return 0  # already drained together with an earlier batch
    written = 0
    while True:
        try:
            count, total = _drain_once(organization_id, DRAIN_MAX_RECORDS)
        except (DataError, IntegrityError, ProgrammingError):
            logger.exception("evidence writer: group refused for org %s; retrying batch by batch", organization_id)
            count, total = _drain_singly(organization_id)
        written += count
        if total < DRAIN_MAX_RECORDS:
            return written


def _drain_once(organization_id: int, max_records: int, only: int | None = None) -> tuple[int, int]:
    with transaction.atomic():
        head = _lock_head(organization_id)
        batches = storage.stage_take(organization_id=organization_id, max_records=max_records, only=only)
        if not batches:
            return 0, 0
        total = sum(count for _pk, _payload, count in batches)
        entries = []
        for _pk, payload, _count in batches:
            entries.extend(_unstage(payload))
        written = _chain_locked(head, _without_foreign_outcomes(organization_id, entries), claim=False)  # their keys were claimed when they were staged
        IngestBatch.objects.filter(pk__in=[pk for pk, _payload, _count in batches]).delete()
        transaction.on_commit(lambda: notify.publish(f"evidence:{organization_id}"))
        transaction.on_commit(lambda: telemetry.evidence_chained(organization_id=organization_id, records=written))
    return written, total


def _drain_singly(organization_id: int) -> tuple[int, int]:
    written = 0
    for pk in IngestBatch.objects.filter(organization_id=organization_id, error="").order_by("id").values_list(
        "pk", flat=True
    )[:200]:
        try:
            written += _drain_once(organization_id, DRAIN_MAX_RECORDS, only=pk)[0]
        except (DataError, IntegrityError, ProgrammingError) as exc:
            logger.error("evidence writer: quarantining batch %s of org %s: %s", pk, organization_id, exc)
            _quarantine(pk, str(exc)[:2000] or type(exc).__name__)
            telemetry.evidence_quarantined(organization_id=organization_id)
    return written, 0


# --- quarantine ---------------------------------------------------------------------------------
QUARANTINE_RETRY_BASE_SECONDS = 60  # first retry after a minute, then doubling...
QUARANTINE_RETRY_MAX_SECONDS = 6 * 3600  # ...up to every six hours
QUARANTINE_MAX_AUTO_RETRIES = 10  # after that only a person retries it (the error is most likely permanent)


def quarantine_backoff_seconds(attempts: int) -> int:
    """Wait before the automatic retry that follows the `attempts`-th refusal."""
    return min(QUARANTINE_RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1), QUARANTINE_RETRY_MAX_SECONDS)


def _quarantine(pk: int, error: str) -> None:
    attempts = (IngestBatch.objects.filter(pk=pk).values_list("attempts", flat=True).first() or 0) + 1
    retry_at = (timezone.now() + dt.timedelta(seconds=quarantine_backoff_seconds(attempts))
                if attempts <= QUARANTINE_MAX_AUTO_RETRIES else None)
    IngestBatch.objects.filter(pk=pk).update(error=error, attempts=attempts, retry_at=retry_at)


def evidence_quarantine_release(*, organization_id: int | None = None, batch_ids: list[int] | None = None,
                                due_only: bool = True, now=None) -> dict[int, int]:
    """Put quarantined batches back in the writer's queue and wake the writer for their organisations.

    `due_only`: only batches whose backoff has passed (the beat); False retries now (an admin). A batch the
    database refuses again is quarantined again with the next, longer backoff. Returns {org id: batches}.
    """
    from cordum.decisions.tasks import evidence_ingest_task

    qs = IngestBatch.objects.exclude(error="")
    if organization_id is not None:
        qs = qs.filter(organization_id=organization_id)
    if batch_ids is not None:
        qs = qs.filter(pk__in=batch_ids)
    if due_only:
        qs = qs.filter(retry_at__lte=now or timezone.now())
    released: dict[int, int] = {}
    with transaction.atomic():
        rows = list(qs.select_for_update(skip_locked=True).values_list("pk", "organization_id"))
        IngestBatch.objects.filter(pk__in=[pk for pk, _org in rows]).update(error="", retry_at=None)
        first_of_org: dict[int, int] = {}
        for pk, org_id in rows:
            released[org_id] = released.get(org_id, 0) + 1
            first_of_org.setdefault(org_id, pk)
        for pk in first_of_org.values():  # one writer run drains the whole organisation
            transaction.on_commit(lambda pk=pk: _enqueue(evidence_ingest_task, pk))
    if released:
        logger.info("evidence quarantine: released %s batch(es) for retry", sum(released.values()))
    return released


# --- the chain writer --------------------------------------------------------------------------
def _lock_head(organization_id: int) -> ChainHead:
    try:
        return ChainHead.objects.select_for_update().get(organization_id=organization_id)
    except ChainHead.DoesNotExist:
        ChainHead.objects.bulk_create([ChainHead(organization_id=organization_id)], ignore_conflicts=True)
        return ChainHead.objects.select_for_update().get(organization_id=organization_id)


def _chain_locked(head: ChainHead, entries: list[tuple[str, str, str]], *, claim: bool) -> int:
    """Append staged entries after `head` (locked by the caller).

    With `claim`, the entries' idempotency keys are claimed here and already-stored ids are skipped; without,
    the caller vouches that they were claimed for exactly these entries (staged batches).
    """
    organization_id = head.organization_id
    unique: dict[str, tuple[str, str]] = {}
    for record_id, body, tail in entries:
        if record_id not in unique:
            unique[record_id] = (body, tail)
    new_ids = storage.claim_keys(organization_id=organization_id, record_ids=list(unique)) if claim else unique
    if not new_ids:
        return 0
    now = timezone.now()
    if head.recorded_at and now <= head.recorded_at:
        now = head.recorded_at + dt.timedelta(microseconds=1)  # recorded_at is monotonic along the chain
    storage.ensure_partition(now)
    recorded_at = format_ts(now)
    seq, prev = head.seq, head.hash
    sha256 = hashlib.sha256
    chain_prefix = f'"organization_id":{organization_id},"recorded_at":"{recorded_at}","seq":'
    if connection.vendor == "postgresql":
        # Stream the COPY in chunks: PostgreSQL inserts (and indexes) chunk n while we hash chunk n+1.
        with storage.copy_stream() as write:
            lines = []
            for record_id, (body, tail) in unique.items():
                if record_id not in new_ids:
                    continue
                seq += 1
                document = f'{{"body":{body},"chain":{{{chain_prefix}{seq}}}}}'
                digest = sha256((prev + document).encode()).hexdigest()
                lines.append(f"{organization_id}\t{seq}\t{recorded_at}\t{prev}\t{digest}\t{tail}\n")
                prev = digest
                if len(lines) == COPY_CHUNK_RECORDS:
                    write("".join(lines))
                    lines = []
            if lines:
                write("".join(lines))
    else:
        rows = []
        for record_id, (body, _tail) in unique.items():
            if record_id not in new_ids:
                continue
            seq += 1
            document = f'{{"body":{body},"chain":{{{chain_prefix}{seq}}}}}'
            digest = sha256((prev + document).encode()).hexdigest()
            rows.append(_sqlite_row(orjson.loads(body), organization_id, seq, recorded_at, prev, digest))
            prev = digest
        storage.write_rows(rows)
    written = seq - head.seq
    head.seq, head.hash, head.recorded_at = seq, prev, now
    head.save(update_fields=["seq", "hash", "recorded_at"])
    return written


def _sqlite_row(body: dict, organization_id: int, seq: int, recorded_at: str, prev: str, digest: str) -> tuple:
    def ts(value: str) -> str:
        return value.replace("T", " ").rstrip("Z")  # Django's SQLite datetime storage (naive UTC)

    row = {**dict.fromkeys(storage.HASHED_WHEN_SET, ""), **body,  # columns absent from the document when empty
           "organization_id": organization_id, "seq": seq, "recorded_at": ts(recorded_at),
           "prev_hash": prev, "hash": digest, "timestamp": ts(body["timestamp"])}
    for column in storage.JSON_COLUMNS:
        row[column] = orjson.dumps(row[column]).decode()
    return tuple(row[c] for c in storage.COLUMNS)


@transaction.atomic
def evidence_append(*, organization: Organization, records: list[dict], agent: Agent | None = None) -> list[str]:
    """In-process append for other apps (e.g. approvals writing a reviewer's decision as an outcome record).

    Records use the upload format (`record_type` "decision" or "outcome"). Who made the call comes from
    `agent` if given, else from the record's "agent" name in this organisation, else (outcome records)
    from the decision record they refer to. Written synchronously into the chain; returns the record ids
    (already-stored ids are accepted again and stored once).
    """
    agents = {}
    if agent is None:
        names = {r.get("agent") for r in records if isinstance(r, dict) and r.get("agent")}
        agents = {a.name: a for a in Agent.objects.filter(organization=organization, name__in=names).select_related("team")}
    ids, rows = [], []
    for index, raw in enumerate(records):
        who = agent or (agents.get(raw.get("agent")) if isinstance(raw, dict) else None)
        record_id, row = _record_validate(raw, index, agent_context(who))
        ids.append(record_id)
        rows.append(row)
    orphans = {r["decision_id"] for r in rows if r["agent_id"] is None and r["record_type"] == RecordType.OUTCOME}
    if orphans:
        known = {
            d["decision_id"]: d for d in EvidenceRecord.objects.filter(
                organization=organization, record_type=RecordType.DECISION, decision_id__in=orphans
            ).values("decision_id", *_CONTEXT_FIELDS, "session_id")
        }
        for row in rows:
            source = known.get(row["decision_id"])
            if row["agent_id"] is None and source:
                row.update({k: source[k] for k in _CONTEXT_FIELDS})
                row["session_id"] = row["session_id"] or source["session_id"]
    entries = _unstage("\n".join(stage_records(ids, rows)).encode())
    head = _lock_head(organization.pk)
    written = _chain_locked(head, entries, claim=True)
    transaction.on_commit(lambda: telemetry.evidence_chained(organization_id=organization.pk, records=written))
    return ids


# --- checkpoints (retention) -------------------------------------------------------------------
def checkpoint_signature(*, organization_id: int, seq: int, hash: str, recorded_before: dt.datetime) -> str:
    key = hashlib.sha256(b"cordum-checkpoint:" + (settings.ENCRYPTION_KEY or settings.SECRET_KEY).encode()).digest()
    message = f"{organization_id}:{seq}:{hash}:{format_ts(recorded_before)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def head_for(organization_id: int) -> ChainHead | None:
    return ChainHead.objects.filter(organization_id=organization_id).first()


__all__ = [
    "GENESIS_HASH", "canonical_json", "chain_hash", "record_document", "records_validate", "evidence_upload_enqueue",
    "evidence_batch_enqueue",
    "evidence_ingest_pending", "evidence_append", "checkpoint_signature", "format_ts",
]
