"""Who sees what (UI and API), exports that match the explorer, and the upload API's error answers."""

import csv
import io

import orjson
import pytest
from django.test import Client
from rest_framework.test import APIClient

from cordum.decisions import services
from cordum.decisions.models import IngestBatch
from tests.decisions.conftest import agent_client, make_decision, make_outcome

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_teams(org_setup):
    pay = [make_decision(n=i, decision="require_approval" if i % 3 == 0 else "allow", session_id="sess_pay",
                         target=f"origin/pay-{i}") for i in range(30)]
    web = [make_decision(n=100 + i, decision="deny" if i % 2 else "allow", session_id="sess_web",
                         target=f"https://web.example/{i}") for i in range(20)]
    services.evidence_append(organization=org_setup["org"], records=pay, agent=org_setup["pay_agent"])
    services.evidence_append(organization=org_setup["org"], records=web, agent=org_setup["web_agent"])
    services.evidence_append(organization=org_setup["org"], records=[make_outcome(pay[0], "approved", reviewer="a@x.io")])
    return {**org_setup, "pay_records": pay, "web_records": web}


def ui(membership) -> Client:
    client = Client()
    client.force_login(membership.user)
    return client


def api(membership) -> APIClient:
    client = APIClient()
    client.force_authenticate(membership.user)
    return client


def test_member_sees_only_their_team_in_the_explorer(two_teams):
    page = ui(two_teams["member"]).get("/evidence/?record_type=decision").content.decode()
    assert "sess_pay" in page and "sess_web" not in page
    assert 'id="evidence-count">30<' in page
    web_id = next(iter(two_teams["web_records"]))["decision_id"]
    from cordum.decisions.models import EvidenceRecord

    web_pk = EvidenceRecord.objects.get(decision_id=web_id).pk
    assert ui(two_teams["member"]).get(f"/evidence/records/{web_pk}/").status_code == 404
    assert ui(two_teams["auditor"]).get(f"/evidence/records/{web_pk}/").status_code == 200
    assert ui(two_teams["member"]).get("/evidence/sessions/sess_web/").status_code == 404
    assert ui(two_teams["member"]).get("/evidence/sessions/sess_pay/").status_code == 200


def test_member_cannot_pull_another_teams_records_through_the_api(two_teams):
    body = api(two_teams["member"]).get("/api/v1/evidence?team=web").json()
    assert body["records"] == []
    body = api(two_teams["member"]).get("/api/v1/evidence").json()
    assert {r["team"] for r in body["records"]} == {"payments"} and len(body["records"]) == 31
    everyone = api(two_teams["auditor"]).get("/api/v1/evidence").json()
    assert len(everyone["records"]) == 51


def test_auditor_sees_every_team(two_teams):
    page = ui(two_teams["auditor"]).get("/evidence/").content.decode()
    assert 'id="evidence-count">51<' in page and "sess_web" in page


def test_siem_cursor_resumes_where_the_previous_page_ended(two_teams):
    client = api(two_teams["auditor"])
    first = client.get("/api/v1/evidence?limit=20").json()
    second = client.get(f"/api/v1/evidence?limit=20&cursor={first['next_cursor']}").json()
    third = client.get(f"/api/v1/evidence?limit=20&cursor={second['next_cursor']}").json()
    seqs = [r["seq"] for page in (first, second, third) for r in page["records"]]
    assert seqs == list(range(1, 52)) and third["has_more"] is False
    empty = client.get(f"/api/v1/evidence?cursor={third['next_cursor']}").json()
    assert empty["records"] == [] and empty["next_cursor"] == third["next_cursor"]


def test_export_of_a_filtered_range_matches_the_explorer_count(two_teams):
    query = "decision=allow&start=2026-11-20T09:00:05&end=2026-11-20T09:01:50"
    page = ui(two_teams["auditor"]).get(f"/evidence/?{query}").content.decode()
    count = int(page.split('id="evidence-count">')[1].split("<")[0])
    assert count > 0
    response = ui(two_teams["auditor"]).get(f"/evidence/export/?{query}&format=jsonl")
    assert response.streaming and int(response["X-Evidence-Count"]) == count
    lines = b"".join(response.streaming_content).splitlines()
    records = [orjson.loads(line) for line in lines]
    assert len(records) == count and {r["decision"] for r in records} == {"allow"}
    response = ui(two_teams["auditor"]).get(f"/evidence/export/?{query}&format=csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == count and rows[0]["hash"]


def test_export_command_writes_the_same_range_as_the_explorer_with_progress(two_teams, tmp_path):
    from django.core.management import call_command

    query = "decision=allow&start=2026-11-20T09:00:05&end=2026-11-20T09:01:50"
    page = ui(two_teams["auditor"]).get(f"/evidence/?{query}").content.decode()
    count = int(page.split('id="evidence-count">')[1].split("<")[0])
    err = io.StringIO()
    call_command("export_evidence", "--org", two_teams["org"].slug, "--decision", "allow",
                 "--start", "2026-11-20T09:00:05", "--end", "2026-11-20T09:01:50", "-o", str(tmp_path / "out.jsonl"),
                 stderr=err)
    records = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert len(records) == count and {r["decision"] for r in records} == {"allow"}
    assert err.getvalue().splitlines()[-1] == f"export acme-test: 100% ({count}/{count} records) → {tmp_path / 'out.jsonl'}"
    call_command("export_evidence", "--org", two_teams["org"].slug, "--format", "csv", "--target-contains", "web.example",
                 "-o", str(tmp_path / "out.csv"), stderr=io.StringIO())
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert len(rows) == len(two_teams["web_records"]) and all("web.example" in r["target"] for r in rows)


def test_export_command_names_a_bad_filter(two_teams, tmp_path):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="Invalid input: decision:"):
        call_command("export_evidence", "--org", two_teams["org"].slug, "--decision", "maybe",
                     "-o", str(tmp_path / "x.jsonl"))


def test_members_cannot_export(two_teams):
    assert ui(two_teams["member"]).get("/evidence/export/?format=jsonl").status_code == 403


def test_upload_400_names_the_record_and_field(org_setup):
    records = [make_decision(n=i) for i in range(5)]
    records[3]["decision"] = "maybe"
    response = agent_client(org_setup["pay_token"]).post("/api/v1/decisions", {"records": records}, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("Invalid input: records[3].decision: ")
    records[3]["decision"] = "allow"
    records[1]["timestamp"] = "yesterday"
    response = agent_client(org_setup["pay_token"]).post("/api/v1/decisions", {"records": records}, format="json")
    assert response.json()["message"].startswith("Invalid input: records[1].timestamp: ")
    assert not IngestBatch.objects.exists()  # all or nothing


def test_upload_without_token_is_401(org_setup):
    response = APIClient().post("/api/v1/decisions", {"records": [make_decision()]}, format="json")
    assert response.status_code == 401
    response = agent_client("cdm_agent_not-a-real-token").post("/api/v1/decisions", {"records": []}, format="json")
    assert response.status_code == 401


def test_people_cannot_upload_evidence(org_setup):
    response = api(org_setup["admin"]).post("/api/v1/decisions", {"records": [make_decision()]}, format="json")
    assert response.status_code == 403


def test_siem_api_rejects_a_cursor_it_did_not_issue(two_teams):
    response = api(two_teams["auditor"]).get("/api/v1/evidence?cursor=not-a-cursor")
    assert response.status_code == 400 and response.json()["message"].startswith("Invalid input: cursor:")


def test_upload_refuses_nul_and_overlong_fields_naming_them(org_setup):
    client = agent_client(org_setup["pay_token"])
    records = [make_decision(n=0), make_decision(n=1, reason="bad\x00byte")]
    response = client.post("/api/v1/decisions", {"records": records}, format="json")
    assert response.status_code == 400 and response.json()["message"].startswith("Invalid input: records[1].reason:")
    records = [make_decision(n=0, session_id="s" * 200)]
    response = client.post("/api/v1/decisions", {"records": records}, format="json")
    assert response.json()["message"] == "Invalid input: records[0].session_id: must be at most 128 characters."


def test_upload_larger_than_djangos_form_limit_is_accepted(org_setup, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    records = [make_decision(n=i, args={"content": "x" * 4000}) for i in range(5)]
    response = agent_client(org_setup["pay_token"]).post("/api/v1/decisions", {"records": records}, format="json")
    assert response.status_code == 202 and len(response.json()["accepted"]) == 5


def test_decision_chart_is_an_svg_of_the_visible_records(two_teams):
    svg = ui(two_teams["auditor"]).get("/evidence/chart/?start=2026-11-20T00:00&end=2026-11-21T00:00").content.decode()
    assert "<svg" in svg and "deny of" in svg  # web's denials are visible to the auditor
    svg = ui(two_teams["member"]).get("/evidence/chart/?start=2026-11-20T00:00&end=2026-11-21T00:00").content.decode()
    assert "<svg" in svg and "deny of" not in svg  # payments has no denials; web's are not counted


def test_csv_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(org_setup):
    services.evidence_append(organization=org_setup["org"], agent=org_setup["pay_agent"], records=[
        make_decision(n=1, target='=HYPERLINK("http://evil.example","x")', reason="+1 then @SUM(A1)")])
    response = ui(org_setup["auditor"]).get("/evidence/export/?format=csv")
    [row] = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert row["target"] == '\'=HYPERLINK("http://evil.example","x")' and row["reason"] == "'+1 then @SUM(A1)"
    jsonl = ui(org_setup["auditor"]).get("/evidence/export/?format=jsonl")
    assert orjson.loads(b"".join(jsonl.streaming_content))["target"] == '=HYPERLINK("http://evil.example","x")'
