"""Webhook verification, the bundle/keys endpoints for agents, the people API and pages, and role checks."""

import pytest
from django.urls import reverse

from cordum.accounts.choices import Role
from cordum.policies import services
from cordum.policies.choices import SyncStatus
from cordum.policies.models import PolicyRepository, PolicyVersion
from tests.factories import MembershipFactory
from tests.policies.conftest import POLICY_INVALID, POLICY_V2, push_payload, signed_headers

pytestmark = pytest.mark.django_db


def _hook(client, repository, body=None, **headers):
    body = body if body is not None else push_payload()
    return client.post(f"/hooks/git/{repository.pk}", body, content_type="application/json", **headers)


# --- webhook ------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["github", "gitlab", "generic"])
def test_signed_webhook_queues_one_sync(client, repository, style, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = _hook(client, repository, **signed_headers(push_payload(), style=style))
    assert response.status_code == 202 and response.json()["provider"] == style
    assert len(callbacks) == 1  # the task is enqueued on commit
    repository.refresh_from_db()
    assert repository.sync_status == SyncStatus.QUEUED


@pytest.mark.parametrize("headers", [
    {},
    signed_headers(push_payload(), secret="wrong"),
    signed_headers(push_payload(), secret="wrong", style="gitlab"),
    signed_headers(push_payload(), secret="wrong", style="generic"),
    {"HTTP_X_HUB_SIGNATURE_256": "sha1=abc"},
], ids=["missing", "github-bad", "gitlab-bad", "generic-bad", "github-wrong-alg"])
def test_bad_or_missing_webhook_signature_is_401_and_nothing_is_queued(
    client, repository, headers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = _hook(client, repository, **headers)
    assert response.status_code == 401 and response.json()["message"] == "Missing or invalid webhook signature."
    assert callbacks == []
    repository.refresh_from_db()
    assert repository.sync_status == SyncStatus.NEW


def test_signature_over_a_different_body_is_401(client, repository, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = _hook(client, repository, b'{"ref": "refs/heads/evil"}', **signed_headers(push_payload()))
    assert response.status_code == 401 and callbacks == []


def test_webhook_for_unknown_repository_is_401(client, repository):
    response = client.post("/hooks/git/999999", push_payload(), content_type="application/json",
                           **signed_headers(push_payload()))
    assert response.status_code == 401


# --- bundle endpoint ----------------------------------------------------------------------------
def _agent(client, token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_bundle_is_404_until_a_valid_policy_is_published(client, repository, agent_token):
    response = client.get("/api/v1/bundle", **_agent(client, agent_token))
    assert response.status_code == 404
    assert response.json()["message"] == "no valid policy has been published for this organisation"


def test_bundle_has_an_etag_and_an_unchanged_etag_gets_304(client, repository, agent_token):
    services.sync_repository(repository=repository)
    response = client.get("/api/v1/bundle", **_agent(client, agent_token))
    assert response.status_code == 200
    body = response.json()
    etag = response["ETag"]
    assert etag == f'"{body["manifest"]["content_sha256"]}-{body["manifest"]["sequence"]}"'

    again = client.get("/api/v1/bundle", HTTP_IF_NONE_MATCH=etag, **_agent(client, agent_token))
    assert again.status_code == 304 and again["ETag"] == etag and again.content == b""
    other = client.get("/api/v1/bundle", HTTP_IF_NONE_MATCH='"stale-0"', **_agent(client, agent_token))
    assert other.status_code == 200


def test_long_poll_with_nothing_new_ends_with_304(client, repository, agent_token):
    services.sync_repository(repository=repository)
    etag = client.get("/api/v1/bundle", **_agent(client, agent_token))["ETag"]
    response = client.get("/api/v1/bundle?wait=1", HTTP_IF_NONE_MATCH=etag, **_agent(client, agent_token))
    assert response.status_code == 304


def test_bundle_wait_must_be_a_number(client, repository, agent_token):
    response = client.get("/api/v1/bundle?wait=soon", **_agent(client, agent_token))
    assert response.status_code == 400 and "wait" in response.json()["message"]


def test_bundle_and_keys_belong_to_the_agents_organisation_only(client, repository, agent_token, signing_key):
    from tests.factories import OrganizationFactory, agent_with_token

    services.sync_repository(repository=repository)
    _other, issued = agent_with_token(organization=OrganizationFactory(), name="stranger")
    assert client.get("/api/v1/bundle", **_agent(client, issued.plaintext)).status_code == 404
    assert client.get("/api/v1/keys", **_agent(client, issued.plaintext)).json() == {"keys": [], "retired": []}
    keys = client.get("/api/v1/keys", **_agent(client, agent_token)).json()["keys"]
    assert keys == [{"key_id": signing_key.key_id, "alg": "ed25519", "public_key": signing_key.public_key,
                     "endorsements": []}]


def test_people_cannot_fetch_the_agent_bundle(client, repository, admin):
    client.force_login(admin)
    assert client.get("/api/v1/bundle").status_code == 403


# --- people API ---------------------------------------------------------------------------------
def test_admin_creates_a_repository_and_gets_the_webhook_secret_once(client, org, admin, workspace):
    client.force_login(admin)
    response = client.post("/api/v1/repositories/", {"name": "policies", "url": str(workspace.remote_path),
                                                     "credentials": "tok"}, content_type="application/json")
    assert response.status_code == 201
    data = response.json()
    assert data["webhook_secret"] and data["has_credentials"] and data["webhook_url"].endswith(f"/hooks/git/{data['id']}")
    listed = client.get("/api/v1/repositories/").json()["results"][0]
    assert "webhook_secret" not in listed and "credentials" not in listed


def test_an_organisation_has_one_policy_repository_a_second_is_refused(client, repository, admin, workspace):
    client.force_login(admin)
    response = client.post("/api/v1/repositories/", {"name": "other", "url": str(workspace.remote_path)},
                           content_type="application/json")
    assert response.status_code == 409
    assert "already has a policy repository (policies)" in response.json()["message"]
    page = client.post(reverse("policies:repository_create"), {"name": "other", "url": str(workspace.remote_path),
                                                               "branch": "main", "policy_path": "safety.yaml"})
    assert page.status_code == 200 and "already has a policy repository" in page.content.decode()
    assert "Add repository" not in client.get(reverse("policies:repository_list")).content.decode()
    assert PolicyRepository.objects.filter(organization=repository.organization).count() == 1


def test_local_repository_paths_are_refused_where_the_server_does_not_allow_them(client, org, admin, workspace,
                                                                                  settings):
    client.force_login(admin)
    settings.CORDUM_ALLOW_LOCAL_REPOSITORIES = False  # production's default
    for url in (str(workspace.remote_path), f"file://{workspace.remote_path}"):
        response = client.post("/api/v1/repositories/", {"name": "policies", "url": url},
                               content_type="application/json")
        assert response.status_code == 400, response.content
        assert "Local paths are not accepted" in response.json()["message"]
    response = client.post("/api/v1/repositories/", {"name": "policies", "url": "ext::sh -c id"},
                           content_type="application/json")
    assert response.status_code == 400 and "Local paths" in response.json()["message"]
    response = client.post("/api/v1/repositories/", {"name": "policies", "url": "https://git.example.com/acme/p.git"},
                           content_type="application/json")
    assert response.status_code == 201
    assert not PolicyRepository.objects.filter(url__contains=str(workspace.remote_path)).exists()


def test_another_organisations_git_cache_is_never_a_policy_repository(client, org, admin, repository, settings):
    """Cache directories are named by repository id: an admin could otherwise read another org's policies."""
    services.sync_repository(repository=repository)  # fills <cache>/repo-<id>.git
    from cordum.policies.gitrepo import GitFetchError, cache_path

    client.force_login(admin)
    response = client.patch(f"/api/v1/repositories/{repository.pk}/", {"url": str(cache_path(repository))},
                            content_type="application/json")
    assert response.status_code == 400 and "inside Cordum's own git cache" in response.json()["message"]
    # a row stored before the check existed is refused at fetch time
    PolicyRepository.objects.filter(pk=repository.pk).update(url=str(cache_path(repository)))
    repository.refresh_from_db()
    with pytest.raises(GitFetchError, match="inside Cordum's own git cache"):
        services.sync_repository(repository=repository)


def test_invalid_repository_input_names_the_field(client, admin):
    client.force_login(admin)
    response = client.post("/api/v1/repositories/", {"name": "has spaces", "url": "x"}, content_type="application/json")
    assert response.status_code == 400 and response.json()["message"].startswith("Invalid input: name:")


def test_review_api_gives_ci_the_validity_and_diff_against_live(client, repository, workspace, admin):
    services.sync_repository(repository=repository)
    workspace.commit(POLICY_V2, "propose", branch="proposed/push")
    bad = workspace.commit(POLICY_INVALID, "broken", branch="proposed/broken")
    services.sync_repository(repository=repository)
    client.force_login(admin)

    ok = client.get(f"/api/v1/repositories/{repository.pk}/review/?branch=proposed/push").json()
    assert ok["is_valid"] and "+ rule approve-git-push" in ok["diff_vs_live"]["text"]
    assert ok["diff_vs_live"]["summary"]["rules"]["added"][0]["id"] == "approve-git-push"
    broken = client.get(f"/api/v1/repositories/{repository.pk}/review/?commit={bad[:10]}").json()
    assert not broken["is_valid"] and broken["errors"][0]["line"] == 8
    missing = client.get(f"/api/v1/repositories/{repository.pk}/review/?commit=deadbeef")
    assert missing.status_code == 404


def test_versions_api_filters_by_branch_and_validity(client, repository, workspace, admin):
    services.sync_repository(repository=repository)
    workspace.commit(POLICY_INVALID, "broken")
    services.sync_repository(repository=repository)
    client.force_login(admin)
    invalid = client.get("/api/v1/policy-versions/?valid=false").json()["results"]
    assert len(invalid) == 1 and invalid[0]["errors"][0]["line"] == 8
    detail = client.get(f"/api/v1/policy-versions/{invalid[0]['id']}/").json()
    assert "decision: maybe" in detail["source_text"] and detail["review"]["is_valid"] is False


def test_admin_rotates_keys_through_the_api(client, org, admin, signing_key):
    client.force_login(admin)
    new = client.post("/api/v1/signing-keys/").json()
    assert new["status"] == "active"
    retired = client.post(f"/api/v1/signing-keys/{signing_key.pk}/retire/").json()
    assert retired["status"] == "retired"


# --- roles --------------------------------------------------------------------------------------
READERS = [Role.ADMIN, Role.POLICY_AUTHOR, Role.REVIEWER, Role.AUDITOR]


@pytest.mark.parametrize("role", list(Role))
def test_reading_policies_needs_a_policy_reading_role(client, org, repository, role):
    services.sync_repository(repository=repository)
    version = PolicyVersion.objects.get()
    client.force_login(MembershipFactory(organization=org, role=role).user)
    expected = 200 if role in READERS else 403
    for url in [reverse("policies:repository_list"), reverse("policies:repository_detail", args=[repository.pk]),
                reverse("policies:version_detail", args=[version.pk]), reverse("policies:key_list"),
                "/api/v1/repositories/", "/api/v1/policy-versions/", "/api/v1/signing-keys/", "/api/v1/bundles/"]:
        assert client.get(url).status_code == expected, url


@pytest.mark.parametrize("role", [Role.POLICY_AUTHOR, Role.REVIEWER, Role.AUDITOR, Role.MEMBER])
def test_only_admins_manage_repositories_and_keys(client, org, repository, signing_key, role):
    client.force_login(MembershipFactory(organization=org, role=role).user)
    assert client.post("/api/v1/repositories/", {"name": "x", "url": "/tmp/x"},
                       content_type="application/json").status_code == 403
    assert client.post(f"/api/v1/repositories/{repository.pk}/sync/").status_code == 403
    assert client.post("/api/v1/signing-keys/").status_code == 403
    assert client.post(f"/api/v1/signing-keys/{signing_key.pk}/retire/").status_code == 403
    assert client.post(reverse("policies:repository_sync", args=[repository.pk])).status_code == 403
    assert client.post(reverse("policies:key_create")).status_code == 403
    assert client.get(reverse("policies:repository_create")).status_code == 403


def test_repositories_of_another_organisation_are_invisible(client, repository):
    from tests.factories import OrganizationFactory

    other_admin = MembershipFactory(organization=OrganizationFactory(), role=Role.ADMIN).user
    client.force_login(other_admin)
    assert client.get(reverse("policies:repository_detail", args=[repository.pk])).status_code == 404
    assert client.get(f"/api/v1/repositories/{repository.pk}/").status_code == 404


# --- pages --------------------------------------------------------------------------------------
def test_pages_show_versions_errors_live_marker_and_diff(client, repository, workspace, admin):
    services.sync_repository(repository=repository)
    workspace.commit(POLICY_INVALID, "broken decision")
    workspace.commit(POLICY_V2, "approve pushes")
    services.sync_repository(repository=repository)
    client.force_login(admin)

    page = client.get(reverse("policies:repository_detail", args=[repository.pk])).content.decode()
    assert "broken decision" in page and "safety.yaml:8:15:" in page and ">live<" in page
    live = PolicyVersion.objects.get(is_live=True)
    version_page = client.get(reverse("policies:version_detail", args=[live.pk])).content.decode()
    assert "approve-git-push" in version_page and "+ rule approve-git-push" in version_page
    listing = client.get(reverse("policies:repository_list")).content.decode()
    assert live.version in listing and "Sync now" in listing


def test_sync_now_button_returns_the_polling_row_for_htmx(client, repository, admin, django_capture_on_commit_callbacks):
    client.force_login(admin)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("policies:repository_sync", args=[repository.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and len(callbacks) == 1
    html = response.content.decode()
    assert 'hx-trigger="every 1s"' in html and "Queued" in html and 'role="progressbar"' in html
    assert PolicyRepository.objects.get(pk=repository.pk).sync_status == SyncStatus.QUEUED


def test_admin_adds_a_repository_in_the_ui_and_sees_the_webhook_secret(client, admin, workspace):
    client.force_login(admin)
    response = client.post(reverse("policies:repository_create"), {
        "name": "policies", "url": str(workspace.remote_path), "branch": "main", "policy_path": "safety.yaml",
        "is_enabled": "on",
    })
    assert response.status_code == 200
    repository = PolicyRepository.objects.get(name="policies")
    assert repository.webhook_secret in response.content.decode()


def test_local_repository_paths_are_confined_to_the_configured_roots_and_to_their_organisation(
        client, org, admin, repository, workspace, settings, tmp_path):
    from tests.factories import MembershipFactory, OrganizationFactory

    other_admin = MembershipFactory(organization=OrganizationFactory(slug="rival"), role=Role.ADMIN).user
    client.force_login(other_admin)
    taken = client.post("/api/v1/repositories/", {"name": "policies", "url": str(workspace.remote_path)},
                        content_type="application/json")
    assert taken.status_code == 400 and "Another organisation's policy repository" in taken.json()["message"]
    settings.CORDUM_LOCAL_REPOSITORY_ROOTS = [str(tmp_path / "allowed")]
    outside = client.post("/api/v1/repositories/", {"name": "policies", "url": "/etc"}, content_type="application/json")
    assert outside.status_code == 400 and "must be under" in outside.json()["message"]
    assert not PolicyRepository.objects.filter(organization__slug="rival").exists()
