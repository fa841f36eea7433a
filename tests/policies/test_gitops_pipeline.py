"""The whole path with real processes: git push -> webhook/poll -> Celery worker -> signed bundle -> client.

A real Celery worker (Redis broker) runs the sync; a live Django server answers the BundleClient's
long-poll. Nothing waits on wall time: the long-poll returning a *new* bundle (not a 304 after the
wait expired) is the proof that it woke up because the bundle was published.
"""

import asyncio
import threading

import pytest
from django.test import Client

from cordum.policies import selectors, services
from cordum.policies.models import PolicyBundle, PolicyVersion
from cordum.policies.tasks import repositories_poll_task
from cordum.sidecar.bundles import BundleClient, BundleError, BundleStore
from tests.policies.conftest import POLICY_INVALID, POLICY_V2, push_payload, signed_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LONG_POLL = 30  # far longer than the pipeline needs; a timeout would show up as a 304 (False), not a pass


class LongPoll:
    """Runs BundleClient.fetch(wait=...) in a thread so the test can push while it waits."""

    def __init__(self, client: BundleClient, wait: int = LONG_POLL):
        self.client, self.wait = client, wait
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.result = asyncio.run(self._fetch())
        except Exception as exc:
            self.error = exc

    async def _fetch(self):
        try:
            return await self.client.fetch(wait=self.wait)
        finally:
            await self.client.aclose()

    def start(self):
        self.thread.start()
        return self

    def join(self):
        self.thread.join(self.wait + 30)
        assert not self.thread.is_alive(), "long-poll never returned"
        if self.error:
            raise self.error
        return self.result


@pytest.fixture
def synced(repository):
    services.sync_repository(repository=repository)
    return repository


def _client(live_server, agent_token, org, tmp_path, trusted=None):
    keys = trusted if trusted is not None else {
        k.key_id: k.public_key for k in selectors.signing_key_list(organization=org, active_only=True)
    }
    return BundleClient(live_server.url, agent_token, keys, BundleStore(tmp_path / "sidecar" / "bundle.json"))


def _fetch(client, wait=0):
    async def go():
        try:
            return await client.fetch(wait=wait)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_push_and_webhook_reach_a_long_polling_client_as_a_new_verified_bundle(
    celery_worker, live_server, synced, workspace, org, agent_token, tmp_path
):
    client = _client(live_server, agent_token, org, tmp_path)
    assert _fetch(client) is True and client.sequence == 1
    poll = LongPoll(client).start()

    sha = workspace.commit(POLICY_V2, "Require approval for git push", tag="v1.1.0")
    response = Client().post(f"/hooks/git/{synced.pk}", push_payload(), content_type="application/json",
                             **signed_headers(push_payload()))
    assert response.status_code == 202 and response.json()["queued"] is True

    assert poll.join() is True, "long-poll ended without a new bundle"
    assert client.current["manifest"]["commit"] == sha and client.sequence == 2
    assert client.current["manifest"]["version"] == f"v1.1.0@{sha[:7]}"
    assert BundleStore(tmp_path / "sidecar" / "bundle.json").load() == client.current  # persisted
    assert PolicyVersion.objects.get(commit_sha=sha).is_live


def test_invalid_commit_is_skipped_by_the_pipeline_and_never_distributed(
    celery_worker, live_server, synced, workspace, org, agent_token, tmp_path
):
    client = _client(live_server, agent_token, org, tmp_path)
    _fetch(client)
    poll = LongPoll(client).start()

    bad = workspace.commit(POLICY_INVALID, "broken decision")
    good = workspace.commit(POLICY_V2, "fixed")
    for style in ("gitlab", "generic"):  # both accepted; the second sync finds nothing new
        assert Client().post(f"/hooks/git/{synced.pk}", push_payload(), content_type="application/json",
                             **signed_headers(push_payload(), style=style)).status_code == 202

    assert poll.join() is True
    assert client.current["manifest"]["commit"] == good and client.sequence == 2  # the bad one got no sequence
    bad_version = PolicyVersion.objects.get(commit_sha=bad)
    assert not bad_version.is_valid and bad_version.errors[0]["line"] == 8
    assert not PolicyBundle.objects.filter(version=bad_version).exists()


def test_polling_catches_a_commit_pushed_without_a_webhook(
    celery_worker, live_server, synced, workspace, org, agent_token, tmp_path
):
    client = _client(live_server, agent_token, org, tmp_path)
    _fetch(client)
    poll = LongPoll(client).start()
    sha = workspace.commit(POLICY_V2, "pushed while the webhook was down")

    repositories_poll_task.delay()  # what Celery beat runs every CORDUM_POLICY_POLL_INTERVAL seconds

    assert poll.join() is True and client.current["manifest"]["commit"] == sha


def test_tampered_bundle_is_rejected_by_the_client_and_the_held_one_stays(
    live_server, synced, org, agent_token, tmp_path
):
    client = _client(live_server, agent_token, org, tmp_path)
    _fetch(client)
    held = client.current
    row = PolicyBundle.objects.get()
    tampered = row.bundle
    tampered["policy"]["defaults"]["decision"] = "allow"
    PolicyBundle.objects.filter(pk=row.pk).update(bundle=tampered, etag='"forged-1"')

    with pytest.raises(BundleError, match="tampered"):
        _fetch(client)
    assert client.current == held


def test_bundle_signed_by_an_unknown_key_id_is_rejected(live_server, synced, org, agent_token, tmp_path):
    from cordum.sidecar.bundles import generate_keypair, key_id_for

    _private, public = generate_keypair()
    client = _client(live_server, agent_token, org, tmp_path, trusted={key_id_for(public): public})
    with pytest.raises(BundleError, match="not signed by a trusted key"):
        _fetch(client)
    assert client.current is None


def test_a_downgraded_bundle_from_the_server_is_refused(live_server, synced, workspace, org, agent_token, tmp_path):
    workspace.commit(POLICY_V2, "v2")
    services.sync_repository(repository=synced)
    client = _client(live_server, agent_token, org, tmp_path)
    _fetch(client)
    assert client.sequence == 2
    # The server now serves the validly signed bundle #1 again (its row moved to the top), without rollback.
    PolicyBundle.objects.filter(sequence=1).update(sequence=3)

    with pytest.raises(BundleError, match="downgrade"):
        _fetch(client)
    assert client.sequence == 2


def test_a_shadow_bundle_is_verified_and_exposed_beside_the_enforced_one(
    live_server, synced, workspace, org, agent_token, tmp_path, monkeypatch
):
    from cordum.rollouts.api import views as rollout_api
    from cordum.rollouts.assignment import AgentBundle

    workspace.commit(POLICY_V2, "candidate", branch="proposed/x")
    services.sync_repository(repository=synced)
    candidate = PolicyVersion.objects.get(branches=["proposed/x"])
    enforced = PolicyBundle.objects.get()
    shadow = services.bundle_publish(version=candidate)
    # What a shadow rollout stage makes bundle_for_agent return (the rollouts app owns that decision).
    monkeypatch.setattr(rollout_api, "bundle_for_agent", lambda *, agent: AgentBundle(bundle=enforced, shadow=shadow))
    updates = []
    client = _client(live_server, agent_token, org, tmp_path)
    client.on_update = updates.append

    assert _fetch(client) is True
    assert client.current["manifest"]["sequence"] == enforced.sequence
    assert client.shadow["manifest"]["version"] == candidate.version
    assert len(updates) == 1
