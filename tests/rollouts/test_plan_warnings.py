"""Saving a plan whose canary names a team the organisation does not have warns: that canary selects nobody."""

import json

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

FORM = {"auto_start": "on", "max_new_restriction_rate": "0.05", "forecast_margin": "0.05", "min_calls": "20"}


def _save(author, repository, teams):
    stages = [{"name": "canary", "kind": "canary", "teams": teams}, {"name": "all", "kind": "all"}]
    response = author.post(reverse("rollouts:plan", args=[repository.pk]),
                           {**FORM, "stages": json.dumps(stages)}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_a_misspelt_canary_team_is_saved_with_a_warning(author, repository, teams):
    html = _save(author, repository, ["paymnts"])
    assert "Rollout plan saved" in html
    assert "Stage canary names team &#x27;paymnts&#x27;, which this organisation does not have" in html


def test_a_canary_of_an_existing_team_saves_without_warning(author, repository, teams):
    html = _save(author, repository, ["payments"])
    assert "Rollout plan saved" in html and "does not have" not in html
