"""Fast path for evidence uploads: decode and type-check a whole batch in C (msgspec), then stage it.

The web tier's per-record cost is the ingest pipeline's bottleneck. `stage_upload` decodes the request body
straight into typed structs (types, lengths and the id charset are checked while parsing, no intermediate
dicts), applies the few remaining checks in one tight loop and renders the staged form.

It is only a fast path: it accepts nothing the reference validator (`services._record_validate`) would refuse
and renders exactly what it would render. Whenever anything does not fit (a bad record, an unusual but valid
shape such as `"shadow": false`, a number orjson cannot represent), it returns None and the caller runs the
reference path, which produces the accepted rows or the error naming record and field.
"""


import datetime as dt
from typing import Annotated, Any

import msgspec
import orjson

from cordum.common.errors import CordumError

_MAX_INT = 2**63 - 1
_Int = Annotated[int, msgspec.Meta(ge=0, le=_MAX_INT)] | None


def _str(max_length: int | None):
    return (Annotated[str, msgspec.Meta(max_length=max_length)] if max_length else str) | None


class _Record(msgspec.Struct, gc=False):
    # Field names and limits mirror services._STR_FIELDS (asserted in services at import time).
    record_type: str
    decision_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}\Z")]
    session_id: _str(128) = None
    sidecar_id: _str(128) = None
    action: _str(200) = None
    target: _str(None) = None
    server: _str(200) = None
    tool: _str(200) = None
    args_digest: _str(80) = None
    topic: _str(300) = None
    rule: _str(200) = None
    reason: _str(None) = None
    policy_version: _str(200) = None
    reviewer: _str(254) = None
    comment: _str(None) = None
    error: _str(None) = None
    root: _str(1024) = None  # the agent's working root the decision was made against (relative paths, "{root}")
    timestamp: str | None = None
    latency_us: _Int = None
    duration_ms: _Int = None
    decision: Any = None  # ignored on outcome records, whatever its type
    outcome: str | None = None
    mode: str | None = None
    risk_tags: list[str] | None = None
    shadow: list[dict[str, str | None]] | None = None
    args: dict | None = None
    facts: Any = None  # rare: a record with facts takes the reference path


class _Upload(msgspec.Struct, gc=False):
    records: list[_Record]


_decoder = msgspec.json.Decoder(_Upload)
asdict = msgspec.structs.asdict
STR_FIELD_NAMES = _Record.__struct_fields__[2:17]


class _Refer(Exception):
    """Not for the fast path: let the reference validator decide (and name the error)."""


def _timestamp(value) -> str:
    parsed = dt.datetime.fromisoformat(value)  # ValueError / TypeError: refer
    if (len(value) == 27 and value[26] == "Z" and value[19] == "." and value[10] == "T" and value[4] == "-"
            and value[7] == "-" and value[13] == ":" and value[16] == ":" and value[11:13] != "24"):
        return value  # already canonical (YYYY-MM-DDTHH:MM:SS.ffffffZ), and a valid time (it parsed)
    if parsed.tzinfo is dt.UTC:
        return parsed.isoformat(timespec="microseconds")[:-6] + "Z"
    offset = parsed.utcoffset()
    if offset is None:
        raise _Refer
    return (parsed - offset).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def stage_upload(body: bytes, context: dict, *, decisions, outcomes, modes, max_records: int,
                 stage) -> tuple[list[str], list[str]] | None:
    """(acknowledgement ids, staged lines, one entry per record) for a valid upload body, or None to use the
    reference path.

    `stage(record_id, row, index)` renders one record's staged lines (the reference renderer, shared).
    """
    try:
        records = _decoder.decode(body).records
    except (msgspec.DecodeError, ValueError):
        return None
    if len(records) > max_records:
        return None
    ids, lines = [], []
    str_fields = STR_FIELD_NAMES
    try:
        for index, rec in enumerate(records):
            record_type, decision_id = rec.record_type, rec.decision_id
            if rec.facts is not None:
                raise _Refer
            row = asdict(rec)  # every field of the struct is a row column
            row.update(context)
            row["facts"] = ""
            for field in str_fields:
                if row[field] is None:
                    row[field] = ""
            row["timestamp"] = _timestamp(rec.timestamp)
            row["latency_us"], row["duration_ms"] = rec.latency_us, rec.duration_ms
            outcome = rec.outcome
            if record_type == "decision":
                decision = rec.decision
                if type(decision) is not str or decision not in decisions:
                    raise _Refer
                if outcome is not None and outcome not in outcomes:
                    raise _Refer
                mode = rec.mode or "enforce"
                if mode not in modes:
                    raise _Refer
                args = rec.args
                row["decision"], row["outcome"], row["mode"] = decision, outcome or "", mode
                row["risk_tags"], row["shadow"] = rec.risk_tags or [], rec.shadow or []
                row["args"] = orjson.dumps(args, option=orjson.OPT_SORT_KEYS).decode() if args else ""
                record_id = decision_id
            elif record_type == "outcome":
                if outcome not in outcomes:
                    raise _Refer
                row["decision"], row["outcome"], row["mode"] = "", outcome, ""
                row["risk_tags"], row["shadow"], row["args"] = [], [], ""
                record_id = f"{decision_id}:{outcome}"
            else:
                raise _Refer
            ids.append(record_id)
            lines.append(stage(record_id, row, index))
    # orjson's encode errors are TypeErrors; CordumError (NUL) is re-raised by the reference path in its order
    except (_Refer, ValueError, TypeError, ArithmeticError, CordumError):
        return None
    return ids, lines
