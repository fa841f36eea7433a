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


def test_an_ambiguous_commit_prefix_is_refused_rather_than_reviewing_whichever_is_newest(client, repository, admin,
                                                                                         workspace):
    from cordum.policies.models import PolicyVersion
    from tests.policies.conftest import POLICY_V2

    services.sync_repository(repository=repository)
    workspace.commit(POLICY_V2, "propose", branch="proposed/push")
    services.sync_repository(repository=repository)
    first, second = PolicyVersion.objects.filter(repository=repository).order_by("committed_at", "pk")[:2]
    PolicyVersion.objects.filter(pk=first.pk).update(commit_sha="abcd1" + "0" * 35)
    PolicyVersion.objects.filter(pk=second.pk).update(commit_sha="abcd2" + "0" * 35)
    client.force_login(admin)
    ambiguous = client.get(f"/api/v1/repositories/{repository.pk}/review/?commit=abcd")
    assert ambiguous.status_code == 400
    assert ambiguous.json()["message"].startswith("Invalid input: commit: abcd is ambiguous")
    exact = client.get(f"/api/v1/repositories/{repository.pk}/review/?commit=abcd1").json()
    assert exact["commit"] == "abcd1" + "0" * 35
