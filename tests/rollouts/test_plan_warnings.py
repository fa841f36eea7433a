"""The rollout plan is edited as stages in a stepper: validated per field, never as raw JSON."""

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

GUARDRAILS = {"auto_start": "on", "max_new_restriction_rate": "0.05", "forecast_margin": "0.05", "min_calls": "20"}


def plan_post(stages: list[dict], **extra) -> dict:
    """The stepper's POST: one card per stage (Django formset fields) plus the guardrails."""
    data = {**GUARDRAILS, "stage-TOTAL_FORMS": str(len(stages)), "stage-INITIAL_FORMS": "0", **extra}
    for i, stage in enumerate(stages):
        for key, value in stage.items():
            data[f"stage-{i}-{key}"] = value
    return data


def test_the_stepper_saves_stages_with_teams_agents_percent_and_soak(author, repository, teams):
    response = author.post(reverse("rollouts:plan", args=[repository.pk]), plan_post([
        {"name": "shadow", "kind": "shadow", "soak_minutes": "10"},
        {"name": "canary", "kind": "canary", "teams": ["payments"], "agents": "claude-code-*, cursor-web",
         "percent": "10", "soak_minutes": "30"},
        {"name": "all", "kind": "all", "soak_minutes": "0"},
    ]))
    assert response.status_code == 302
    repository.refresh_from_db()
    assert repository.rollout_plan.stages == [
        {"name": "shadow", "kind": "shadow", "min_soak_seconds": 600},
        {"name": "canary", "kind": "canary", "min_soak_seconds": 1800, "teams": ["payments"],
         "agents": ["claude-code-*", "cursor-web"], "percent": 10},
        {"name": "all", "kind": "all", "min_soak_seconds": 0},
    ]
    page = author.get(reverse("rollouts:plan", args=[repository.pk])).content.decode()
    assert 'value="claude-code-*, cursor-web"' in page
    assert re.search(r'name="stage-1-teams" value="payments"[^>]* checked', page)


def test_a_canary_of_a_team_the_organisation_does_not_have_is_refused(author, repository, teams):
    response = author.post(reverse("rollouts:plan", args=[repository.pk]), plan_post([
        {"name": "canary", "kind": "canary", "teams": ["paymnts"], "soak_minutes": "0"},
        {"name": "all", "kind": "all", "soak_minutes": "0"},
    ]))
    assert response.status_code == 400
    assert "Select a valid choice. paymnts is not one of the available choices." in response.content.decode()


def test_a_plan_that_never_reaches_everyone_or_an_empty_canary_is_refused(author, repository, teams):
    url = reverse("rollouts:plan", args=[repository.pk])
    never_all = author.post(url, plan_post([{"name": "shadow", "kind": "shadow", "soak_minutes": "0"}]))
    assert never_all.status_code == 400 and "The last stage must enforce for all" in never_all.content.decode()
    empty = author.post(url, plan_post([{"name": "c", "kind": "canary", "soak_minutes": "0"},
                                        {"name": "all", "kind": "all", "soak_minutes": "0"}]))
    assert empty.status_code == 400 and "needs teams, agents or a percentage" in empty.content.decode()


def test_add_a_stage_shows_one_more_card_and_saves_nothing(author, repository, teams):
    url = reverse("rollouts:plan", args=[repository.pk])
    response = author.post(url, plan_post([{"name": "all", "kind": "all", "soak_minutes": "0"}], add_stage="1"))
    html = response.content.decode()
    assert response.status_code == 200 and 'data-testid="stage-2"' in html
    assert not hasattr(repository, "rollout_plan") or repository.rollout_plan is None
