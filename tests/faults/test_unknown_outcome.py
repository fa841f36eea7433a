"""A call a killed sidecar left open is closed with the `unknown` outcome; the control plane stores it."""

import pytest

from cordum.decisions.models import EvidenceRecord
from cordum.sidecar.enforcer import INTERRUPTED_FORWARDED
from tests.decisions.conftest import agent_client, make_decision, make_outcome
from tests.decisions.test_pipeline import wait_until_ingested

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_unknown_outcome_from_a_recovered_sidecar_is_accepted_and_stored(org_setup, celery_worker):
    decision = make_decision(n=1)
    closed = make_outcome(decision, "unknown", error=INTERRUPTED_FORWARDED)
    response = agent_client(org_setup["pay_token"]).post("/api/v1/decisions", {"records": [decision, closed]},
                                                         format="json")
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == [decision["decision_id"], f"{decision['decision_id']}:unknown"]
    wait_until_ingested(organization=org_setup["org"], expected=2)
    stored = EvidenceRecord.objects.get(decision_id=decision["decision_id"], record_type="outcome")
    assert (stored.outcome, stored.error) == ("unknown", INTERRUPTED_FORWARDED)


def test_the_explorer_filters_on_the_unknown_outcome(org_setup):
    from cordum.decisions.filters import EvidenceFilterForm

    assert "unknown" in dict(EvidenceFilterForm.base_fields["outcome"].choices)
