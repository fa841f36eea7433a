"""Evidence the database refused is quarantined, retried with backoff, and shown to admins with a retry action."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from cordum.decisions import services, storage
from cordum.decisions.audit import verify_chain
from cordum.decisions.models import EvidenceRecord, IngestBatch
from cordum.decisions.tasks import evidence_quarantine_retry_task
from tests.decisions.conftest import make_decision

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    """Run what services enqueue after commit (the test's transaction never commits)."""

    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


@pytest.fixture
def refusing_database():
    """The database refuses evidence rows whose target starts with 'refuse' until the fixture is told to stop:
    a passing refusal (a constraint or partition fixed later), raised as PostgreSQL raises check violations."""
    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION test_refuse_evidence() RETURNS trigger AS $$ BEGIN
              IF NEW.target LIKE 'refuse%' THEN
                RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'check_violation';
              END IF; RETURN NEW; END $$ LANGUAGE plpgsql""")
        cursor.execute(f"CREATE TRIGGER test_refuse BEFORE INSERT ON {storage.TABLE} "
                       "FOR EACH ROW EXECUTE FUNCTION test_refuse_evidence()")

    def heal():
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS test_refuse ON {storage.TABLE}")

    yield heal
    heal()
    with connection.cursor() as cursor:
        cursor.execute("DROP FUNCTION IF EXISTS test_refuse_evidence()")


def _quarantine_one(org_setup) -> IngestBatch:
    services.evidence_batch_enqueue(agent=org_setup["pay_agent"], records=[make_decision(n=1, target="refuse-me")])
    services.evidence_batch_enqueue(agent=org_setup["pay_agent"], records=[make_decision(n=2)])
    services.evidence_ingest_pending(organization_id=org_setup["org"].pk)
    assert EvidenceRecord.objects.count() == 1  # the rest flowed
    return IngestBatch.objects.get()


def test_a_quarantined_batch_is_retried_after_its_backoff_and_chained_once_accepted(org_setup, refusing_database,
                                                                                     celery_eager, on_commit):
    batch = _quarantine_one(org_setup)
    assert batch.error and batch.attempts == 1
    first_wait = (batch.retry_at - timezone.now()).total_seconds()
    assert 0 < first_wait <= services.quarantine_backoff_seconds(1)

    assert evidence_quarantine_retry_task() == 0  # not due yet: nothing moves
    IngestBatch.objects.filter(pk=batch.pk).update(retry_at=timezone.now() - dt.timedelta(seconds=1))
    assert on_commit(evidence_quarantine_retry_task) == 1  # due, but still refused: back with a longer backoff
    batch.refresh_from_db()
    assert batch.error and batch.attempts == 2
    assert (batch.retry_at - timezone.now()).total_seconds() > first_wait

    refusing_database()  # the cause goes away
    IngestBatch.objects.filter(pk=batch.pk).update(retry_at=timezone.now() - dt.timedelta(seconds=1))
    assert on_commit(evidence_quarantine_retry_task) == 1
    assert not IngestBatch.objects.exists()
    assert EvidenceRecord.objects.filter(target="refuse-me").count() == 1
    assert verify_chain(organization_id=org_setup["org"].pk).ok


def test_backoff_doubles_and_is_capped():
    waits = [services.quarantine_backoff_seconds(n) for n in range(1, 14)]
    assert waits[:3] == [60, 120, 240] and max(waits) == services.QUARANTINE_RETRY_MAX_SECONDS
    assert waits == sorted(waits)


def test_after_the_last_automatic_retry_only_a_person_retries(org_setup, refusing_database):
    batch = _quarantine_one(org_setup)
    IngestBatch.objects.filter(pk=batch.pk).update(attempts=services.QUARANTINE_MAX_AUTO_RETRIES)
    services.evidence_quarantine_release(organization_id=org_setup["org"].pk, due_only=False)
    services.evidence_ingest_pending(organization_id=org_setup["org"].pk)
    batch.refresh_from_db()
    assert batch.error and batch.retry_at is None
    assert evidence_quarantine_retry_task() == 0


def test_admins_see_the_quarantined_count_and_retry_it_from_the_ui(org_setup, refusing_database, client,
                                                                   celery_eager, on_commit):
    _quarantine_one(org_setup)
    client.force_login(org_setup["admin"].user)
    page = client.get(reverse("decisions:quarantine"))
    assert page.status_code == 200
    assert "<strong>1</strong> quarantined batch" in page.content.decode()
    assert "refused for the test" in page.content.decode()
    assert "1 evidence batch refused by the database is quarantined" in client.get(
        reverse("decisions:explorer")).content.decode()

    refusing_database()
    response = on_commit(client.post, reverse("decisions:quarantine"))
    assert response.status_code == 302
    assert not IngestBatch.objects.exists() and EvidenceRecord.objects.count() == 2
    assert "<strong>0</strong> quarantined batches" in client.get(reverse("decisions:quarantine")).content.decode()


@pytest.mark.parametrize("role", ["auditor", "member"])
def test_only_admins_open_the_quarantine(org_setup, client, role):
    client.force_login(org_setup[role].user)
    assert client.get(reverse("decisions:quarantine")).status_code == 403
    assert client.post(reverse("decisions:quarantine")).status_code == 403


def test_the_command_lists_and_retries_quarantined_batches(org_setup, refusing_database, celery_eager, capsys,
                                                           on_commit):
    _quarantine_one(org_setup)
    call_command("retry_quarantined_evidence", "--list")
    listed = capsys.readouterr().out
    assert "acme-test: 1 quarantined batch(es), 1 record(s)" in listed and "refused for the test" in listed
    assert IngestBatch.objects.exclude(error="").count() == 1  # --list retries nothing
    refusing_database()
    on_commit(call_command, "retry_quarantined_evidence", "--org", "acme-test")
    assert "1 batch(es) queued for retry" in capsys.readouterr().out
    assert not IngestBatch.objects.exists()
