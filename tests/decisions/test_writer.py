"""The single writer and its queue: ordering, idempotency decided at staging, canonical form, group choice,
and a batch the database refuses."""

import importlib
import threading

import pytest
from django.apps import apps as django_apps
from django.db import connection, connections

from cordum.decisions import services, storage
from cordum.decisions.audit import verify_chain
from cordum.decisions.models import EvidenceKey, EvidenceRecord, IngestBatch
from tests.decisions.conftest import make_decision, make_outcome

pytestmark = pytest.mark.django_db


def _stage(org_setup, records):
    """Stage an upload the way the API does (claim keys, store the new records); return the new batch's id."""
    services.evidence_batch_enqueue(agent=org_setup["pay_agent"], records=records)
    return IngestBatch.objects.order_by("-id").values_list("pk", flat=True).first()


def _stage_unclaimed(org_setup, records):
    """A batch staged without claiming keys (as every batch was before migration 0005)."""
    ids, rows = services.records_validate(records=records, agent=org_setup["pay_agent"])
    return storage.stage_insert(organization_id=org_setup["org"].pk, agent_id=org_setup["pay_agent"].pk,
                                payload="\n".join(services.stage_records(ids, rows)).encode(), record_count=len(rows))


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


def test_a_retried_upload_is_acknowledged_but_staged_only_once(org_setup):
    records = [make_decision(n=i) for i in range(3)]
    first = services.evidence_batch_enqueue(agent=org_setup["pay_agent"], records=records)
    again = services.evidence_batch_enqueue(agent=org_setup["pay_agent"], records=[*records, records[0]])
    assert again == [*first, first[0]]  # every id is acknowledged: each is durably held once
    assert IngestBatch.objects.count() == 1
    assert services.evidence_ingest_pending(organization_id=org_setup["org"].pk) == 3
    # After the writer ran, a retry still finds the keys taken.
    services.evidence_batch_enqueue(agent=org_setup["pay_agent"], records=records)
    assert not IngestBatch.objects.exists()
    assert EvidenceRecord.objects.count() == 3


def test_a_record_repeated_inside_one_upload_is_staged_once(org_setup):
    record = make_decision(n=1)
    services.evidence_batch_enqueue(agent=org_setup["pay_agent"], records=[record, record, make_outcome(record)])
    assert IngestBatch.objects.get().record_count == 2
    assert services.evidence_ingest_pending(organization_id=org_setup["org"].pk) == 2


def test_writer_takes_batches_in_order_up_to_the_group_size_reading_only_their_payloads(org_setup):
    big = _stage(org_setup, [make_decision(n=i) for i in range(5)])
    small = [_stage(org_setup, [make_decision(n=10 + 2 * i), make_decision(n=11 + 2 * i)]) for i in range(3)]
    org = org_setup["org"].pk
    # The first batch is always taken, even when it alone exceeds the group size.
    assert [pk for pk, _p, _n in storage.stage_take(organization_id=org, max_records=3)] == [big]
    assert [pk for pk, _p, _n in storage.stage_take(organization_id=org, max_records=9)] == [big, *small[:2]]
    assert [pk for pk, _p, _n in storage.stage_take(organization_id=org, max_records=9, only=small[2])] == [small[2]]
    taken = storage.stage_take(organization_id=org, max_records=100)
    assert [(pk, n) for pk, _p, n in taken] == [(big, 5), *[(pk, 2) for pk in small]]
    assert all(payload.count(b"\n") == 3 * n - 1 for _pk, payload, n in taken)
    assert services._drain_once(org, 9) == (9, 9)
    assert list(IngestBatch.objects.values_list("pk", flat=True)) == [small[2]]


def test_pending_batches_staged_before_keys_were_claimed_at_upload_are_deduplicated_by_the_migration(org_setup):
    stored = make_decision(n=1)
    services.evidence_append(organization=org_setup["org"], agent=org_setup["pay_agent"], records=[stored])
    fresh = [make_decision(n=2), make_decision(n=3)]
    mixed = _stage_unclaimed(org_setup, [stored, *fresh])
    only_old = _stage_unclaimed(org_setup, [fresh[0]])
    migration = importlib.import_module("cordum.decisions.migrations.0005_claim_keys_of_staged_batches")
    migration.claim_keys_of_pending_batches(django_apps, connection.schema_editor())
    assert IngestBatch.objects.get(pk=mixed).record_count == 2
    assert not IngestBatch.objects.filter(pk=only_old).exists()  # everything in it was already staged
    assert set(EvidenceKey.objects.values_list("record_id", flat=True)) == {r["decision_id"] for r in [stored, *fresh]}
    assert services.evidence_ingest_pending(organization_id=org_setup["org"].pk) == 2
    assert verify_chain(organization_id=org_setup["org"].pk).ok


@pytest.mark.django_db(transaction=True)
def test_concurrent_uploads_of_the_same_records_stage_each_record_once(org_setup):
    records = [make_decision(n=i) for i in range(200)]
    halves = [records[:150], list(reversed(records[50:]))]  # overlapping ids, claimed in opposite order
    barrier, errors = threading.Barrier(len(halves)), []

    def upload(batch):
        try:
            barrier.wait()
            services.evidence_batch_enqueue(agent=org_setup["pay_agent"], records=batch)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=upload, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(IngestBatch.objects.values_list("record_count", flat=True)) == 200
    assert services.evidence_ingest_pending(organization_id=org_setup["org"].pk) == 200
    assert sorted(EvidenceRecord.objects.values_list("decision_id", flat=True)) == sorted(
        r["decision_id"] for r in records)


def test_root_is_stored_and_hashed_and_a_record_without_one_hashes_as_records_did_before_it_existed(org_setup):
    services.evidence_append(organization=org_setup["org"], agent=org_setup["pay_agent"], records=[
        make_decision(n=1, root="/home/mo/src/payments"), make_decision(n=2)])
    with_root, without = EvidenceRecord.objects.filter(organization=org_setup["org"]).order_by("seq")
    documents = [services.record_document({c: getattr(r, c) for c in storage.COLUMNS}) for r in (with_root, without)]
    assert with_root.root == documents[0]["body"]["root"] == "/home/mo/src/payments"
    assert "root" not in documents[1]["body"]
    for record, document in zip((with_root, without), documents, strict=True):
        assert services.chain_hash(record.prev_hash, document) == record.hash
    assert verify_chain(organization_id=org_setup["org"].pk).ok
