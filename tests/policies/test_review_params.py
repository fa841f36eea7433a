"""The review API called without a commit or branch answers 400 saying what to give (a CI misconfiguration),
not a 404 that reads like "this commit was not found"."""

import pytest

from cordum.policies import services

pytestmark = pytest.mark.django_db


def test_review_without_commit_or_branch_is_a_400_naming_what_to_give(client, repository, admin):
    services.sync_repository(repository=repository)
    client.force_login(admin)
    response = client.get(f"/api/v1/repositories/{repository.pk}/review/")
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid input: give commit=<sha> or branch=<name>."
    assert client.get(f"/api/v1/repositories/{repository.pk}/review/?commit=deadbeef").status_code == 404
