"""The simulation pages: form (versions, paste, errors), progress partial for htmx, report, compare."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from cordum.simulation import services
from cordum.simulation.models import Simulation
from tests.simulation.data import INVALID_POLICY

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", Role.values)
def test_the_pages_follow_the_role_matrix(member_client, sim_org, versions, role):
    simulation = services.simulation_create(organization=sim_org, user=None, enqueue=False,
                                            candidate_version_id=versions["candidate"].pk)
    client = member_client(role)
    can_read = role in {Role.ADMIN, Role.POLICY_AUTHOR, Role.AUDITOR}
    can_run = role in {Role.ADMIN, Role.POLICY_AUTHOR}
    assert client.get(reverse("simulation:list")).status_code == (200 if can_read else 403)
    assert client.get(reverse("simulation:detail", args=[simulation.pk])).status_code == (200 if can_read else 403)
    assert client.get(reverse("simulation:compare")).status_code == (200 if can_read else 403)
    assert client.get(reverse("simulation:create")).status_code == (200 if can_run else 403)


def test_an_author_runs_a_version_and_sees_the_matrix(author, versions, recorded, celery_eager,
                                                     django_capture_on_commit_callbacks):
    page = author.get(reverse("simulation:create") + f"?version={versions['candidate'].pk}")
    assert "proposed@bbbbbbb" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = author.post(reverse("simulation:create"), {
            "candidate_version": versions["candidate"].pk, "days": 7, "baseline": "recorded",
        })
    assert response.status_code == 302
    simulation = Simulation.objects.get()
    assert response["Location"] == reverse("simulation:detail", args=[simulation.pk])
    html = author.get(response["Location"]).content.decode()
    assert 'id="transition-matrix"' in html
    assert "deny-env-reads" in html and "deny-terraform-destroy" in html
    # This author is scoped to no team, so reads every team's records: samples link to them.
    assert '<a class="mono" href="/evidence/records/' in html


def test_report_samples_link_only_to_evidence_records_the_reader_may_open(member_client, sim_org, versions,
                                                                         recorded):
    from cordum.decisions.models import EvidenceRecord

    simulation = services.simulation_run(simulation=services.simulation_create(
        organization=sim_org, user=None, enqueue=False, candidate_version_id=versions["candidate"].pk))
    url = reverse("simulation:detail", args=[simulation.pk])
    samples = {s for key in ("changed_by_rule", "changed_by_agent", "changed_calls")
               for g in simulation.report[key] for s in g["samples"]}
    pk_team = dict(EvidenceRecord.objects.filter(decision_id__in=samples, record_type="decision")
                   .values_list("pk", "team__slug"))
    assert {"payments", "web"} <= set(pk_team.values())

    def linked(client):
        import re

        html = client.get(url).content.decode()
        return {int(pk) for pk in re.findall(r'<a class="mono" href="/evidence/records/(\d+)/"', html)}

    auditor = member_client(Role.AUDITOR)
    assert linked(auditor) == set(pk_team)  # every team's records
    for pk in linked(auditor):
        assert auditor.get(reverse("decisions:record", args=[pk])).status_code == 200

    author = member_client(Role.POLICY_AUTHOR)
    author.user.memberships.get().teams.set(sim_org.teams.filter(slug="payments"))
    assert author.get(url).status_code == 404  # it replays every team's calls: not for a payments-only reader


def test_an_invalid_version_is_refused_as_a_form_error_with_file_line_col(author, versions):
    response = author.post(reverse("simulation:create"), {"candidate_version": versions["invalid"].pk, "days": 7,
                                                          "baseline": "recorded"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "is invalid and cannot be simulated" in html
    assert "safety.yaml:3:" in html
    assert not Simulation.objects.exists()


def test_invalid_pasted_yaml_is_a_form_error(author, versions):
    response = author.post(reverse("simulation:create"), {"policy_yaml": INVALID_POLICY, "days": 7,
                                                          "baseline": "recorded"})
    assert response.status_code == 400
    assert "safety.yaml:3:" in response.content.decode()


def test_while_running_the_htmx_partial_polls_and_shows_progress(author, sim_org, versions):
    simulation = services.simulation_create(organization=sim_org, user=None, enqueue=False,
                                            candidate_version_id=versions["candidate"].pk)
    Simulation.objects.filter(pk=simulation.pk).update(status="running", progress=0.42, rows_total=100,
                                                       rows_processed=42)
    response = author.get(reverse("simulation:detail", args=[simulation.pk]), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html
    assert 'hx-trigger="every 1s"' in html and "42%" in html
    assert response["Vary"] == "HX-Request" or "HX-Request" in response["Vary"]


def test_two_reports_compare_side_by_side(author, sim_org, versions, recorded):
    a = services.simulation_run(simulation=services.simulation_create(
        organization=sim_org, user=None, enqueue=False, candidate_version_id=versions["candidate"].pk))
    b = services.simulation_run(simulation=services.simulation_create(
        organization=sim_org, user=None, enqueue=False, candidate_version_id=versions["live"].pk))
    html = author.get(reverse("simulation:compare") + f"?a={a.pk}&b={b.pk}").content.decode()
    assert 'id="compare-table"' in html
    assert "Newly denied" in html and "-5" in html


def test_the_version_review_page_offers_simulate_this_commit_to_authors(author, versions):
    html = author.get(reverse("policies:version_detail", args=[versions["candidate"].pk])).content.decode()
    assert f'href="{reverse("simulation:create")}?version={versions["candidate"].pk}"' in html
    form = author.get(reverse("simulation:create") + f"?version={versions['candidate'].pk}").content.decode()
    assert f'<option value="{versions["candidate"].pk}" selected>' in form


def test_the_version_review_page_has_no_simulate_button_for_auditors(member_client, versions):
    auditor = member_client(Role.AUDITOR)
    html = auditor.get(reverse("policies:version_detail", args=[versions["candidate"].pk])).content.decode()
    assert "Simulate this commit" not in html


def test_the_list_shows_each_reports_headline_figures(author, sim_org, versions, recorded):
    simulation = services.simulation_run(simulation=services.simulation_create(
        organization=sim_org, user=None, enqueue=False, candidate_version_id=versions["candidate"].pk))
    html = author.get(reverse("simulation:list")).content.decode()
    assert f'href="{reverse("simulation:detail", args=[simulation.pk])}"' in html
    assert '<span class="badge deny">5</span>' in html


def test_an_uploaded_safety_yaml_is_a_candidate(author, versions, recorded, celery_eager,
                                                django_capture_on_commit_callbacks):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.simulation.data import CANDIDATE_POLICY, EXPECTED_MATRIX

    upload = SimpleUploadedFile("safety.yaml", CANDIDATE_POLICY.encode(), content_type="application/x-yaml")
    with django_capture_on_commit_callbacks(execute=True):
        response = author.post(reverse("simulation:create"), {"policy_file": upload, "days": 7,
                                                              "baseline": "recorded"})
    assert response.status_code == 302
    simulation = Simulation.objects.get()
    assert simulation.candidate_source == "text" and simulation.candidate_text == CANDIDATE_POLICY
    assert simulation.report["matrix"] == EXPECTED_MATRIX


def test_the_list_and_compare_say_what_each_simulation_was_compared_with(author, sim_org, versions, recorded):
    import re

    from cordum.simulation.choices import Baseline

    runs = {baseline: services.simulation_run(simulation=services.simulation_create(
        organization=sim_org, user=None, enqueue=False, candidate_version_id=versions["candidate"].pk,
        baseline=baseline)) for baseline in (Baseline.RECORDED, Baseline.LIVE)}
    rows = re.findall(r'<td class="baseline"[^>]*>([^<]*)</td>', author.get(reverse("simulation:list")).content.decode())
    assert sorted(rows) == [f"vs live {versions['live'].version}", "vs recorded"]
    a, b = runs[Baseline.RECORDED].pk, runs[Baseline.LIVE].pk
    html = author.get(reverse("simulation:compare") + f"?a={a}&b={b}").content.decode()
    assert f"#{a} proposed@bbbbbbb (7d, vs recorded)" in html
    assert f"#{b} proposed@bbbbbbb (7d, vs live {versions['live'].version})" in html


def test_changed_calls_say_what_the_call_did_only_to_readers_who_may_open_it(member_client, sim_org, versions):
    import datetime as dt

    from django.utils import timezone

    from cordum.decisions.services import evidence_append
    from tests.simulation.data import recorded_calls

    day1 = (timezone.now() - dt.timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    evidence_append(organization=sim_org, records=[
        {**r, "action": "read.file" if "path" in r["args"] else f"{r['server']}.{r['tool']}",
         "target": r["args"].get("path") or r["args"].get("branch") or r["args"].get("command")}
        for r in recorded_calls(day1)])
    simulation = services.simulation_run(simulation=services.simulation_create(
        organization=sim_org, user=None, enqueue=False, candidate_version_id=versions["candidate"].pk))
    url = reverse("simulation:detail", args=[simulation.pk])

    def changed_calls(client):
        return client.get(url).content.decode().split('id="changed-calls"')[1].split("</table>")[0]

    everything = changed_calls(member_client(Role.AUDITOR))
    assert "read.file services/api/.env" in everything and "read.file .env" in everything  # payments and web
    author = member_client(Role.POLICY_AUTHOR)
    author.user.memberships.get().teams.set(sim_org.teams.filter(slug="payments"))
    assert author.get(url).status_code == 404  # every team's calls: a payments-only reader opens none of it



def test_a_team_scoped_author_simulates_only_their_teams_calls_and_opens_only_such_simulations(
        member_client, sim_org, versions, recorded):
    from cordum.accounts.models import Membership

    author = member_client(Role.POLICY_AUTHOR)
    Membership.objects.get(user=author.user).teams.set(sim_org.teams.filter(slug="payments"))
    response = author.post(reverse("simulation:create"), {"candidate_version": versions["candidate"].pk, "days": 7,
                                                          "baseline": "recorded"})
    assert response.status_code == 302
    scoped = Simulation.objects.get()
    services.simulation_run(simulation=scoped)
    scoped.refresh_from_db()
    payments_calls = sum(1 for r in recorded if r["team"] == "payments")
    assert scoped.report["summary"]["total_calls"] == payments_calls < len(recorded)  # no other team's calls
    everyone = services.simulation_run(simulation=services.simulation_create(
        organization=sim_org, user=None, enqueue=False, candidate_version_id=versions["candidate"].pk))
    assert author.get(reverse("simulation:detail", args=[everyone.pk])).status_code == 404  # every team's calls
    assert author.get(f"/api/v1/simulations/{everyone.pk}").status_code == 404
    listed = author.get(reverse("simulation:list")).content.decode()
    assert f"/simulations/{scoped.pk}/" in listed and f"/simulations/{everyone.pk}/" not in listed
