"""The evidence table refuses UPDATE and DELETE in the database; verify_audit catches edits made behind it."""

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from cordum.decisions import services
from cordum.decisions.audit import verify_chain
from cordum.decisions.models import EvidenceRecord
from tests.decisions.conftest import make_decision, make_outcome


@pytest.fixture
def chained(org_setup):
    records = [make_decision(n=i, decision="require_approval") for i in range(20)]
    services.evidence_append(organization=org_setup["org"], records=records, agent=org_setup["pay_agent"])
    services.evidence_append(
        organization=org_setup["org"],
        records=[make_outcome(records[3], "approved", reviewer="alice@example.com", comment="ok")],
    )
    return org_setup


@pytest.mark.django_db
def test_update_through_orm_and_sql_is_refused(chained):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        EvidenceRecord.objects.filter(seq=1).update(decision="allow")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE decisions_evidencerecord SET target = 'x' WHERE seq = 2")
    assert EvidenceRecord.objects.get(seq=1, organization=chained["org"]).decision == "require_approval"


@pytest.mark.django_db
def test_delete_is_refused(chained):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        EvidenceRecord.objects.filter(seq=5).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM decisions_evidencerecord")
    assert EvidenceRecord.objects.filter(organization=chained["org"]).count() == 21


@pytest.mark.django_db
def test_outcome_from_another_app_is_appended_and_linked_without_touching_the_decision(chained):
    rows = list(EvidenceRecord.objects.filter(organization=chained["org"], seq__in=[4, 21]).order_by("seq"))
    decision, outcome = rows
    assert outcome.decision_id == decision.decision_id and outcome.record_type == "outcome"
    assert (outcome.outcome, outcome.reviewer) == ("approved", "alice@example.com")
    assert outcome.team_slug == "payments"  # inherited from the decision it refers to
    assert decision.outcome == ""  # the original is untouched


@pytest.mark.django_db
def test_verify_passes_on_a_clean_chain(chained, capsys):
    assert verify_chain(organization_id=chained["org"].pk).ok
    call_command("verify_audit", "--org", chained["org"].slug)
    captured = capsys.readouterr()
    assert "OK, 21 records verified" in captured.out
    assert f"{chained['org'].slug}: verifying: 100% (21/21 records)" in captured.err  # progress on stderr


@pytest.mark.django_db(transaction=True)
def test_verify_reports_the_first_tampered_record(chained, capsys):
    with connection.cursor() as cursor:  # as superuser, behind the trigger's back
        cursor.execute("ALTER TABLE decisions_evidencerecord DISABLE TRIGGER evidence_append_only")
        try:
            cursor.execute(
                "UPDATE decisions_evidencerecord SET decision = 'allow' WHERE organization_id = %s AND seq = 7",
                [chained["org"].pk],
            )
        finally:
            cursor.execute("ALTER TABLE decisions_evidencerecord ENABLE TRIGGER evidence_append_only")
    result = verify_chain(organization_id=chained["org"].pk)
    assert not result.ok and result.broken_seq == 7 and "altered" in result.problem
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_audit", "--org", chained["org"].slug)
    assert exit_info.value.code == 1
    assert "BROKEN at seq 7" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_verify_reports_a_removed_record(chained):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE decisions_evidencerecord DISABLE TRIGGER evidence_append_only")
        try:
            cursor.execute("DELETE FROM decisions_evidencerecord WHERE organization_id = %s AND seq = 12",
                           [chained["org"].pk])
        finally:
            cursor.execute("ALTER TABLE decisions_evidencerecord ENABLE TRIGGER evidence_append_only")
    result = verify_chain(organization_id=chained["org"].pk)
    assert not result.ok and result.broken_seq == 12
