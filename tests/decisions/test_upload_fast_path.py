"""The upload fast path (msgspec) stages exactly what the reference validator stages, and hands everything
else to the reference path (which names the bad record and field)."""

import orjson
import pytest

from cordum.decisions import services, upload
from tests.decisions.conftest import make_decision, make_outcome


def _fast(body: bytes, agent):
    return upload.stage_upload(
        body, services.agent_context(agent), decisions=services._DECISIONS, outcomes=services._OUTCOMES,
        modes=services._MODES, max_records=services.MAX_BATCH_RECORDS, stage=services._stage,
    )


def _reference(body: bytes, agent):
    ids, rows = services.records_validate(records=orjson.loads(body)["records"], agent=agent)
    return ids, services.stage_records(ids, rows)  # one staged string per record, as the fast path returns


@pytest.mark.parametrize("extra", [
    {},
    {"timestamp": "2026-01-01T12:00:00+02:00"},
    {"timestamp": "2026-01-01T12:00:00.5-05:30"},
    {"timestamp": "2026-01-01T12:00:00Z"},
    {"root": "/home/mo/src/payments"},
    {"timestamp": "2026-01-01t12:00:00.000001Z"},
    {"target": "a\tb\\c\nd\re \u00e9 \u2603 \"quoted\""},
    {"args": {"z": 1, "a": [1.5, None, "x"], "m": {"b": 2, "a": 1}}},
    {"args": {}},
    {"args": None},
    {"shadow": [{"rule": "r", "decision": "deny", "policy_version": None}]},
    {"risk_tags": [], "shadow": None},
    {"mode": None},
    {"mode": ""},
    {"mode": "shadow"},
    {"outcome": "executed"},
    {"latency_us": None, "duration_ms": 5},
])
def test_fast_path_stages_byte_for_byte_what_the_reference_validator_stages(org_setup, extra):
    agent = org_setup["pay_agent"]
    decision = make_decision(n=1, **extra)
    records = [decision, make_decision(n=2), make_outcome(decision), {**make_outcome(decision, "approved"), "decision": 5}]
    body = orjson.dumps({"records": records})
    staged = _fast(body, agent)
    assert staged is not None
    assert staged == _reference(body, agent)


@pytest.mark.parametrize("extra", [
    {"decision": "maybe"}, {"timestamp": "2026-01-01T12:00:00"}, {"timestamp": 5}, {"timestamp": "yesterday"},
    {"decision_id": "a b"}, {"decision_id": "x\n"}, {"tool": "x" * 201}, {"latency_us": -1}, {"latency_us": True},
    {"shadow": False}, {"outcome": ""}, {"record_type": "x"}, {"reason": "a\x00b"}, {"risk_tags": [1]},
    {"args": [1]},
])
def test_fast_path_hands_anything_unusual_to_the_reference_path(org_setup, extra):
    body = orjson.dumps({"records": [make_decision(n=0), make_decision(n=1, **extra)]})
    assert _fast(body, org_setup["pay_agent"]) is None


@pytest.mark.parametrize("body", [b"[]", b"{}", b'{"records": 5}', b"nope",
                                  b'{"records": [{"record_type": "decision", "args": {"n": 1180591620717411303424}}]}'])
def test_fast_path_hands_malformed_bodies_to_the_reference_path(org_setup, body):
    assert _fast(body, org_setup["pay_agent"]) is None


def test_a_shadow_of_false_is_still_accepted_through_the_reference_path(org_setup):
    records = [make_decision(n=0, shadow=False)]
    assert services.evidence_upload_enqueue(agent=org_setup["pay_agent"], body=orjson.dumps({"records": records})) == [
        records[0]["decision_id"]]
