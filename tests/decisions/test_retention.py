"""Retention drops whole month partitions after export and a signed checkpoint; verify keeps working."""

import datetime as dt
import gzip
from types import SimpleNamespace

import orjson
import pytest
from django.core.management import call_command
from django.db import connection

from cordum.decisions import services, storage
from cordum.decisions.audit import verify_chain
from cordum.decisions.models import ChainCheckpoint, EvidenceRecord
from cordum.decisions.retention import partitions_to_drop
from tests.decisions.conftest import make_decision

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def old_and_new(org_setup, monkeypatch):
    """40 records chained four months ago, 10 chained now."""
    real_now = dt.datetime.now(dt.UTC)
    long_ago = real_now - dt.timedelta(days=125)
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=lambda: long_ago))
    services.evidence_append(organization=org_setup["org"], records=[make_decision(n=i) for i in range(40)],
                             agent=org_setup["pay_agent"])
    monkeypatch.setattr(services, "timezone", SimpleNamespace(now=lambda: real_now))
    services.evidence_append(organization=org_setup["org"], records=[make_decision(n=100 + i) for i in range(10)],
                             agent=org_setup["pay_agent"])
    month = long_ago.date().replace(day=1)
    return {**org_setup, "old_partition": storage.partition_name(month)}


def test_old_month_is_exported_checkpointed_dropped_and_verify_still_passes(old_and_new, tmp_path, capsys):
    org = old_and_new["org"]
    assert old_and_new["old_partition"] in [name for name, _ in partitions_to_drop(keep_months=2)]
    call_command("evidence_retention", "--keep-months", "2", "--export-dir", str(tmp_path))
    assert old_and_new["old_partition"] not in [name for name, _ in storage.partitions()]
    assert EvidenceRecord.objects.filter(organization=org).count() == 10
    checkpoint = ChainCheckpoint.objects.get(organization=org)
    assert checkpoint.seq == 40 and checkpoint.record_count == 40
    exported = [orjson.loads(line) for line in gzip.open(tmp_path / f"{old_and_new['old_partition']}.jsonl.gz")]
    assert [r["seq"] for r in exported] == list(range(1, 41)) and exported[-1]["hash"] == checkpoint.hash
    result = verify_chain(organization_id=org.pk)
    assert result.ok and result.resumed_from_checkpoint == 40 and result.checked == 10
    call_command("verify_audit", "--org", org.slug)
    assert "resumed after retention checkpoint #40" in capsys.readouterr().out


def test_forged_checkpoint_is_caught(old_and_new, tmp_path):
    call_command("evidence_retention", "--keep-months", "2", "--export-dir", str(tmp_path))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE decisions_chaincheckpoint SET hash = %s", ["f" * 64])
    result = verify_chain(organization_id=old_and_new["org"].pk)
    assert not result.ok and "signature" in result.problem


def test_partition_maintenance_creates_the_next_months_ahead(db):
    from cordum.decisions.tasks import evidence_partitions_maintain_task

    evidence_partitions_maintain_task()
    this_month = dt.datetime.now(dt.UTC).date().replace(day=1)
    names = {name for name, _ in storage.partitions()}
    assert {storage.partition_name(storage.add_months(this_month, m)) for m in range(3)} <= names
