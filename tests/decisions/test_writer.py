"""The single writer: ordering, idempotency inside a batch, canonical form, and a batch the database refuses."""

import pytest

from cordum.decisions import services, storage
from cordum.decisions.audit import verify_chain
from cordum.decisions.models import EvidenceRecord, IngestBatch
from tests.decisions.conftest import make_decision, make_outcome

pytestmark = pytest.mark.django_db


def _stage(org_setup, records):
    ids, rows = services.records_validate(records=records, agent=org_setup["pay_agent"])
    return storage.stage_insert(organization_id=org_setup["org"].pk, agent_id=org_setup["pay_agent"].pk,
                                payload=services.stage_records(ids, rows), record_count=len(rows))


def test_writer_chains_pending_batches_in_arrival_order_and_stores_duplicates_once(org_setup):
    first = [make_decision(n=i) for i in range(5)]
    second = [first[0], make_outcome(first[0], "executed"), make_decision(n=9)]
    _stage(org_setup, first)
    _stage(org_setup, second)
    assert services.evidence_ingest_pending(organization_id=org_setup["org"].pk) == 7
    stored = list(EvidenceRecord.objects.filter(organization=org_setup["org"]).order_by("seq"))
    assert [r.record_id for r in stored] == [
        *[r["decision_id"] for r in first], f"{first[0]['decision_id']}:executed", second[2]["decision_id"]]
    assert not IngestBatch.objects.exists()
    assert verify_chain(organization_id=org_setup["org"].pk).ok


def test_spliced_document_is_the_canonical_json_of_the_record(org_setup):
    services.evidence_append(organization=org_setup["org"], agent=org_setup["pay_agent"],
                             records=[make_decision(n=1, target="tab\there \\ and\nnewline", args={"k": "é\\"})])
    record = EvidenceRecord.objects.get(organization=org_setup["org"])
    document = services.record_document({c: getattr(record, c) for c in storage.COLUMNS})
    assert services.chain_hash(record.prev_hash, document) == record.hash
    assert record.target == "tab\there \\ and\nnewline"


def test_a_batch_the_database_refuses_is_quarantined_and_the_rest_flows(org_setup):
    good_before = _stage(org_setup, [make_decision(n=1)])
    bad = IngestBatch.objects.create(organization=org_setup["org"], agent=org_setup["pay_agent"], record_count=1,
                                     payload=b'x-1\n{"body":1}\nnot\ta\tvalid\tcopy\tline')
    good_after = _stage(org_setup, [make_decision(n=2)])
    assert services.evidence_ingest_pending(organization_id=org_setup["org"].pk) == 2
    assert EvidenceRecord.objects.filter(organization=org_setup["org"]).count() == 2
    bad.refresh_from_db()
    assert bad.error
    assert not IngestBatch.objects.filter(pk__in=[good_before, good_after]).exists()
    assert verify_chain(organization_id=org_setup["org"].pk).ok
