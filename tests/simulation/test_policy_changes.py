"""A branch or pull request head as a change: refreshed after sync, simulated once per content, shown on its page
with the semantic diff (file:line), the red/green line diff, validation errors at their lines and the gates."""

import pytest

from cordum.accounts.choices import Role
from cordum.policies import services as policy_services
from cordum.simulation import services
from cordum.simulation.models import PolicyChange, Simulation
from tests.factories import MembershipFactory
from tests.simulation.data import CANDIDATE_POLICY, EXPECTED_MATRIX, INVALID_POLICY

GATES = """\
version: v1
gates:
  max_newly_denied: 10%
  max_new_approvals_per_day: 20
  protected_topics: ["job.mcp-bridge.git.*"]
"""


def _sync_and_refresh(repository):
    policy_services.sync_repository(repository=repository)
    repository.refresh_from_db()
    changes = {c.ref: c for c in services.policy_changes_refresh(repository=repository)}
    for change in changes.values():
        if change.simulation is not None and not change.simulation.is_finished:
            services.simulation_run(simulation=change.simulation)
            change.simulation.refresh_from_db()
    return changes


def _page(client, repository, ref):
    return client.get(f"/simulations/changes/{repository.pk}/{ref}")


@pytest.mark.django_db
def test_a_pushed_branch_is_simulated_against_the_live_version_over_the_recorded_week(
        git_workspace, git_repository, recorded):
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    changes = _sync_and_refresh(git_repository)
    simulation = changes["deny-env"].simulation
    assert simulation.status == "completed" and simulation.days == 7
    assert simulation.baseline == "live" and simulation.baseline_version.is_live
    assert simulation.report["matrix"] == EXPECTED_MATRIX
    assert simulation.evidence_watermark == len(recorded)


@pytest.mark.django_db
def test_the_same_policy_content_on_another_push_reuses_the_simulation(git_workspace, git_repository, recorded):
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    first = _sync_and_refresh(git_repository)["deny-env"].simulation
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads (again, from a fork)", branch="deny-env-copy")
    git_workspace.commit(CANDIDATE_POLICY + "# a comment changes no meaning\n", "comment", branch="deny-env")
    changes = _sync_and_refresh(git_repository)
    assert changes["deny-env-copy"].simulation.pk == first.pk
    assert changes["deny-env"].simulation.pk == first.pk
    assert Simulation.objects.count() == 1


@pytest.mark.django_db
def test_new_evidence_then_new_content_runs_a_new_simulation(git_workspace, git_repository, recorded):
    from cordum.decisions.services import evidence_append
    from tests.simulation.data import recorded_calls

    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    first = _sync_and_refresh(git_repository)["deny-env"].simulation
    more = [{**r, "decision_id": r["decision_id"].replace("0193a000", "0193b000")} for r in recorded_calls()[:2]]
    evidence_append(organization=git_repository.organization, records=more)
    # The same head again (a poll): nothing new runs.
    assert _sync_and_refresh(git_repository)["deny-env"].simulation.pk == first.pk
    git_workspace.commit(CANDIDATE_POLICY.replace("Secrets stay on disk", "Secrets stay put"), "reword",
                         branch="deny-env")
    second = _sync_and_refresh(git_repository)["deny-env"].simulation
    assert second.pk != first.pk and second.evidence_watermark == first.evidence_watermark + 2


@pytest.mark.django_db
def test_the_change_page_shows_the_semantic_diff_with_lines_and_the_red_green_diff(
        client, git_workspace, git_repository, recorded):
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    _sync_and_refresh(git_repository)
    client.force_login(MembershipFactory(organization=git_repository.organization, role=Role.POLICY_AUTHOR).user)
    response = _page(client, git_repository, "deny-env")
    assert response.status_code == 200
    html = response.content.decode()
    # Semantic diff: the two added rules, each linked to its line in the new safety.yaml.
    assert 'href="#safetyyaml-n23">safety.yaml:23</a>' in html  # deny-env-reads starts on line 23
    assert "deny-terraform-destroy" in html and "safety.yaml:30" in html
    # Red/green diff: the added lines, numbered on the new side.
    assert '<tr class="add" id="safetyyaml-n23">' in html
    assert "+  - id: deny-env-reads" in html
    # The simulation: matrix and the calls that change, with examples.
    assert 'id="transition-matrix"' in html and 'id="changed-calls"' in html
    assert "services/api/.env" in html or "read_file" in html
    assert 'id="dead-rules"' in html and "deny-terraform-destroy" in html


@pytest.mark.django_db
def test_the_branch_list_links_each_head_to_its_change_page(client, git_workspace, git_repository):
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    policy_services.sync_repository(repository=git_repository)
    client.force_login(MembershipFactory(organization=git_repository.organization, role=Role.REVIEWER).user)
    html = client.get(f"/policies/repositories/{git_repository.pk}/").content.decode()
    assert f'href="/simulations/changes/{git_repository.pk}/deny-env"' in html
    assert f'href="/simulations/changes/{git_repository.pk}/main"' not in html


@pytest.mark.django_db
def test_an_invalid_head_shows_its_errors_at_their_lines_and_is_not_simulated(client, git_workspace, git_repository):
    git_workspace.commit(INVALID_POLICY, "oops", branch="broken")
    changes = _sync_and_refresh(git_repository)
    assert changes["broken"].simulation is None
    client.force_login(MembershipFactory(organization=git_repository.organization, role=Role.REVIEWER).user)
    html = _page(client, git_repository, "broken").content.decode()
    assert 'id="change-invalid"' in html
    # INVALID_POLICY line 3 is "decision: maybe": the error row follows that added line.
    row = html.index('<tr class="add" id="safetyyaml-n3">')
    assert 'class="issue error"' in html[row:row + 600] and "maybe" in html[row:row + 600]
    assert "Not simulated: the policy at this head is invalid." in html


@pytest.mark.django_db
def test_a_pull_request_head_from_a_fork_is_a_change_too(client, git_workspace, git_repository, recorded):
    sha = git_workspace.commit(CANDIDATE_POLICY, "From a fork", branch="fork-work", push=False)
    git_workspace.clone.git.push("origin", f"{sha}:refs/pull/7/head")
    changes = _sync_and_refresh(git_repository)
    assert changes["pull/7/head"].simulation.status == "completed"
    client.force_login(MembershipFactory(organization=git_repository.organization, role=Role.REVIEWER).user)
    assert _page(client, git_repository, "pull/7/head").status_code == 200


@pytest.mark.django_db
def test_gates_of_the_live_branch_judge_each_change(client, git_workspace, git_repository, recorded):
    git_workspace.commit(GATES, "Gates", path="cordum.yaml")
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    changes = _sync_and_refresh(git_repository)
    from cordum.simulation.selectors import policy_change_gates

    gates = policy_change_gates(change=changes["deny-env"])
    verdicts = {v["gate"]: v["passed"] for v in gates["verdicts"]}
    # 5 of 15 calls newly denied (33%) is over 10%; approvals per day do not move; no git call moves.
    assert verdicts == {"max_newly_denied": False, "max_new_approvals_per_day": True, "protected_topics": True}
    assert gates["passed"] is False and gates["source"].startswith("cordum.yaml@")
    client.force_login(MembershipFactory(organization=git_repository.organization, role=Role.REVIEWER).user)
    html = _page(client, git_repository, "deny-env").content.decode()
    assert 'id="gates-verdict">fail<' in html and 'data-gate="max_newly_denied"' in html


@pytest.mark.django_db
def test_a_branch_cannot_relax_its_own_gates_and_its_bad_cordum_yaml_shows_errors_inline(
        client, git_workspace, git_repository, recorded):
    git_workspace.commit(GATES, "Gates", path="cordum.yaml")
    git_workspace.commit(GATES.replace("10%", "100%").replace("max_new_approvals_per_day", "max_new_aprovals"),
                         "relax the gates", path="cordum.yaml", branch="deny-env")
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    changes = _sync_and_refresh(git_repository)
    from cordum.simulation.selectors import policy_change_gates

    assert policy_change_gates(change=changes["deny-env"])["passed"] is False  # judged by main's gates
    client.force_login(MembershipFactory(organization=git_repository.organization, role=Role.REVIEWER).user)
    html = _page(client, git_repository, "deny-env").content.decode()
    row = html.index('<tr class="add" id="cordumyaml-n4">')
    assert "unknown key &#x27;max_new_aprovals&#x27; in gates" in html[row:row + 800]


@pytest.mark.django_db
def test_unreadable_gates_fail_closed(git_workspace, git_repository, recorded):
    git_workspace.commit("gates:\n  max_newly_denied: many\n", "bad gates", path="cordum.yaml")
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    changes = _sync_and_refresh(git_repository)
    from cordum.simulation.selectors import policy_change_gates

    gates = policy_change_gates(change=changes["deny-env"])
    assert gates["passed"] is False and gates["errors"][0]["line"] == 2


@pytest.mark.django_db
def test_a_reviewer_scoped_to_one_team_sees_only_that_teams_example_calls(client, git_workspace, git_repository,
                                                                          recorded):
    from cordum.accounts.models import Team

    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    _sync_and_refresh(git_repository)
    membership = MembershipFactory(organization=git_repository.organization, role=Role.REVIEWER)
    membership.teams.add(Team.objects.get(organization=git_repository.organization, slug="web"))
    client.force_login(membership.user)
    html = _page(client, git_repository, "deny-env").content.decode()
    changed = html[html.index('id="changed-calls"'):]
    changed = changed[:changed.index("</table>")]
    assert "cursor-web" in changed and "claude-code-mo" not in changed
    by_agent = html[html.index('id="changed-by-agent"'):]
    assert "claude-code-mo" not in by_agent[:by_agent.index("</table>")]
    assert 'id="hidden-rows"' in html
    # The organisation-wide figures stay whole: 5 calls newly denied, as the gates judge them.
    assert ">5</div>newly denied" in html.replace("\n", "").replace('<div class="stat" style="color:var(--deny)">', ">")


@pytest.mark.django_db
def test_an_unknown_head_is_a_404(client, git_repository):
    client.force_login(MembershipFactory(organization=git_repository.organization, role=Role.REVIEWER).user)
    assert _page(client, git_repository, "no-such-branch").status_code == 404


@pytest.mark.django_db
def test_a_member_without_policy_access_is_refused(client, git_workspace, git_repository):
    client.force_login(MembershipFactory(organization=git_repository.organization, role=Role.MEMBER).user)
    assert _page(client, git_repository, "main").status_code == 403


@pytest.mark.django_db
def test_a_deleted_branch_is_forgotten(git_workspace, git_repository, recorded):
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    _sync_and_refresh(git_repository)
    git_workspace.clone.git.push("origin", "--delete", "deny-env")
    _sync_and_refresh(git_repository)
    assert not PolicyChange.objects.filter(repository=git_repository, ref="deny-env").exists()


@pytest.mark.django_db
def test_the_branch_list_state_says_how_many_calls_change_and_which_gates_fail(client, git_workspace,
                                                                               git_repository, recorded):
    git_workspace.commit(GATES, "Gates", path="cordum.yaml")
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    git_workspace.commit(INVALID_POLICY, "oops", branch="broken")
    _sync_and_refresh(git_repository)
    client.force_login(MembershipFactory(organization=git_repository.organization, role=Role.REVIEWER).user)
    state = client.get(f"/simulations/change-state/{git_repository.pk}/deny-env").content.decode()
    assert "5 calls change" in state and "gates fail · max_newly_denied" in state
    assert "invalid: not simulated" in client.get(
        f"/simulations/change-state/{git_repository.pk}/broken").content.decode()
    page = client.get(f"/policies/repositories/{git_repository.pk}/").content.decode()
    assert f'hx-get="/simulations/change-state/{git_repository.pk}/deny-env"' in page


@pytest.mark.django_db
def test_simulate_changes_runs_each_head_with_progress_and_exits_1_when_a_gate_fails(git_workspace, git_repository,
                                                                                     recorded):
    import io

    from django.core.management import CommandError, call_command

    git_workspace.commit(GATES, "Gates", path="cordum.yaml")
    git_workspace.commit(CANDIDATE_POLICY, "Deny .env reads", branch="deny-env")
    policy_services.sync_repository(repository=git_repository)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="1 change\\(s\\) fail: .*deny-env"):
        call_command("simulate_changes", stdout=out, stderr=err)
    slug = git_repository.organization.slug
    assert f"simulate {slug}/policies deny-env: 100% (15/15 calls) completed" in err.getvalue()
    assert ("deny-env: 5 of 15 calls change (5 newly denied, 0 newly need approval); gates fail: max_newly_denied "
            "(max_newly_denied: 5 calls newly denied (33.33% of 15); at most 10% allowed)") in out.getvalue()
    # Run again: the result is cached, nothing is replayed, the verdict is the same.
    err2 = io.StringIO()
    with pytest.raises(CommandError):
        call_command("simulate_changes", stdout=io.StringIO(), stderr=err2)
    assert "simulate " not in err2.getvalue() and Simulation.objects.count() == 1
