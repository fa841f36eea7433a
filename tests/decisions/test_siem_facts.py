"""Audit export to SIEMs keeps working with what the sidecar observed: the masked-result facts (and the session
data-flow facts: labels a call set, the flow rule's label and the earlier call that set it) are fields of their
own in every export a SIEM reads (the SIEM API, streamed JSONL and CSV, background export jobs), next to the
`facts` object as recorded and hashed."""

import csv
import io

import orjson
import pytest
from django.test import Client
from rest_framework.test import APIClient

from cordum.decisions import services
from cordum.decisions.exports import export_job_run
from cordum.decisions.models import ExportJob
from cordum.decisions.selectors import SIEM_EXPORT_FIELDS, siem_facts
from tests.decisions.conftest import make_decision, make_outcome

pytestmark = pytest.mark.django_db

MASKED = {"AWS Access Key": 1, "Private Key": 1}


@pytest.fixture
def observed(org_setup, settings, tmp_path):
    settings.STATE_DIR = tmp_path
    masked = make_decision(n=1, outcome="executed", facts={"masked": MASKED})
    withheld = make_decision(n=2)
    plain = make_decision(n=3, outcome="executed")
    services.evidence_append(organization=org_setup["org"], agent=org_setup["pay_agent"], records=[
        masked, withheld, plain, make_outcome(withheld, "executed", facts={"masked": {"GitHub Token": 2},
                                                                            "withheld": True})])
    return {**org_setup, "masked": masked, "withheld": withheld, "plain": plain}


def _auditor_ui(setup) -> Client:
    client = Client()
    client.force_login(setup["auditor"].user)
    return client


def _by_record(records) -> dict[str, dict]:
    return {r["record_id"]: r for r in records}


def _check(records: dict[str, dict], observed, *, parse=lambda v: v) -> None:
    masked = records[observed["masked"]["decision_id"]]
    assert parse(masked["masked"]) == MASKED and parse(masked["withheld"]) is False
    assert parse(masked["facts"]) == {"masked": MASKED}  # the recorded (hashed) object stays as it was
    outcome = records[f'{observed["withheld"]["decision_id"]}:executed']
    assert parse(outcome["masked"]) == {"GitHub Token": 2} and parse(outcome["withheld"]) is True
    plain = records[observed["plain"]["decision_id"]]
    assert parse(plain["masked"]) == {} and parse(plain["withheld"]) is False and parse(plain["labels"]) == []
    assert parse(plain["flow_label"]) is None


def test_the_siem_api_gives_masked_result_facts_as_fields(observed):
    api = APIClient()
    api.force_authenticate(observed["auditor"].user)
    page = api.get("/api/v1/evidence").json()
    assert list(page["records"][0]) == list(SIEM_EXPORT_FIELDS)
    _check(_by_record(page["records"]), observed)


def test_streamed_jsonl_and_csv_exports_give_masked_result_facts_as_fields(observed):
    jsonl = _auditor_ui(observed).get("/evidence/export/?format=jsonl")
    _check(_by_record(orjson.loads(line) for line in b"".join(jsonl.streaming_content).splitlines()), observed)

    response = _auditor_ui(observed).get("/evidence/export/?format=csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert tuple(rows[0]) == SIEM_EXPORT_FIELDS

    def cell(value):  # CSV: objects, lists and booleans as JSON text, nothing as ""
        return orjson.loads(value) if value else None

    _check(_by_record(rows), observed, parse=cell)


def test_a_background_export_job_gives_masked_result_facts_as_fields(observed):
    job = ExportJob.objects.create(organization=observed["org"], requested_by=observed["auditor"].user,
                                   format="jsonl", filters={}, team_scope=None)
    export_job_run(job_id=job.pk)
    job.refresh_from_db()
    lines = open(job.path, "rb").read().splitlines()
    _check(_by_record(orjson.loads(line) for line in lines), observed)


def test_session_flow_facts_become_fields_as_the_sidecar_records_them():
    facts = {"labels": ["secret-read"], "flow": {"label": "secret-read", "rule": "deny-egress-after-secret",
                                                  "set_by": {"decision_id": "0190-read-env", "server": "filesystem",
                                                             "tool": "read_text_file", "target": "/p/.env"}}}
    assert siem_facts(facts) == {"masked": {}, "withheld": False, "labels": ["secret-read"],
                                 "flow_label": "secret-read", "flow_rule": "deny-egress-after-secret",
                                 "flow_set_by": "0190-read-env"}
    assert siem_facts({}) == {"masked": {}, "withheld": False, "labels": [], "flow_label": None, "flow_rule": None,
                              "flow_set_by": None}
