"""A signing key rotation reaches sidecars without a reinstall: the new key, endorsed by a trusted one, is
learned from the real control plane; a key with no valid endorsement is refused and the held bundle stays."""

from __future__ import annotations

import asyncio

import pytest

from cordum.sidecar.bundles import (
    BundleClient,
    BundleError,
    BundleStore,
    KeyStore,
    generate_keypair,
    key_endorse,
    key_id_for,
    keys_learn,
)

POLICY = "version: v1\ndefaults: {decision: deny}\nrules: []\n"


@pytest.fixture
def published(db, tmp_path):
    from cordum.policies import services
    from cordum.policies.models import PolicyRepository
    from tests.factories import OrganizationFactory, agent_with_token
    from tests.rollouts.conftest import publish_version

    org = OrganizationFactory(slug="acme-keys")
    _agent, issued = agent_with_token(organization=org, name="claude-code-keys")
    first = services.signing_key_create(organization=org)
    repository = PolicyRepository.objects.create(organization=org, name="policies", url="/nonexistent", branch="main")
    publish_version(repository, POLICY, "v1.0.0")
    return {"org": org, "token": issued.plaintext, "first": first}


def _rotate(org):
    from django.db import connection

    from cordum.policies import services

    try:
        return services.signing_key_rotate(organization=org)
    finally:
        connection.close()  # this thread's connection, so the test database can be dropped


async def _fetch_once(client: BundleClient) -> bool:
    try:
        return await client.fetch()
    finally:
        await client.aclose()


def _client(url, published, tmp_path) -> BundleClient:
    first = published["first"]
    return BundleClient(url, published["token"], {first.key_id: first.public_key},
                        BundleStore(tmp_path / "bundle.json"), key_store=KeyStore(tmp_path / "bundle.keys.json"))


@pytest.mark.django_db(transaction=True)
def test_a_rotated_key_endorsed_by_the_trusted_key_is_learned_and_its_bundle_accepted(live_server, published,
                                                                                        tmp_path):
    client = _client(live_server.url, published, tmp_path)
    seen = {}

    async def fetch_rotate_fetch():
        try:
            assert await client.fetch() is True
            seen["held"] = client.sequence
            # the old key is retired: the new one signs alone (the ORM call runs off the event loop)
            seen["new"] = await asyncio.to_thread(_rotate, published["org"])
            return await client.fetch()
        finally:
            await client.aclose()

    assert asyncio.run(fetch_rotate_fetch()) is True
    held, new = seen["held"], seen["new"]
    assert client.sequence > held
    assert [s["key_id"] for s in client.current["signatures"]] == [new.key_id]
    assert client.trusted_keys[new.key_id] == new.public_key
    # A restart (same config, nothing reinstalled) trusts the learned key and keeps the bundle it signed.
    again = _client(live_server.url, published, tmp_path)
    assert again.current is not None and again.sequence == client.sequence


@pytest.mark.django_db(transaction=True)
def test_a_new_key_without_a_valid_endorsement_is_refused_and_the_held_bundle_stays(live_server, published,
                                                                                     tmp_path):
    from cordum.common import crypto
    from cordum.policies import services
    from cordum.policies.models import SigningKey

    client = _client(live_server.url, published, tmp_path)
    assert asyncio.run(_fetch_once(client)) is True
    held = client.sequence
    # A key slipped in beside the trusted one, "endorsed" by a key nobody trusts under the trusted key's id.
    private, public = generate_keypair()
    forger, _ = generate_keypair()
    forged = key_endorse(key_id=key_id_for(public), public_key=public, signer_key_id=published["first"].key_id,
                         signer_private_key=forger)
    SigningKey.objects.create(organization=published["org"], key_id=key_id_for(public), public_key=public,
                              private_key_encrypted=crypto.encrypt(private), endorsements=[forged])
    services.signing_key_retire(key=published["first"])  # the bundle is now signed by the intruder only

    with pytest.raises(BundleError, match="not signed by a trusted key"):
        asyncio.run(_fetch_once(client))
    assert client.sequence == held  # the held bundle stays in force
    assert key_id_for(public) not in client.trusted_keys
    assert KeyStore(tmp_path / "bundle.keys.json").trusted({}) == {}


def _key(endorsed_by=None, *, bad=False):
    private, public = generate_keypair()
    key = {"key_id": key_id_for(public), "public_key": public, "endorsements": []}
    if endorsed_by is not None:
        signer_id, signer_private = endorsed_by
        if bad:
            signer_private, _ = generate_keypair()
        key["endorsements"].append(key_endorse(key_id=key["key_id"], public_key=public, signer_key_id=signer_id,
                                               signer_private_key=signer_private))
    return key, private


def test_trust_follows_an_endorsement_chain_and_nothing_else():
    root, root_private = _key()
    second, second_private = _key((root["key_id"], root_private))
    third, _ = _key((second["key_id"], second_private))
    unsigned, _ = _key()
    badly_signed, _ = _key((root["key_id"], root_private), bad=True)
    mislabelled, _ = _key((root["key_id"], root_private))
    mislabelled = {**mislabelled, "key_id": "k_0000000000000000"}
    trusted = keys_learn({root["key_id"]: root["public_key"]}, [third, second, unsigned, badly_signed, mislabelled])
    assert set(trusted) == {root["key_id"], second["key_id"], third["key_id"]}


def test_an_edited_key_file_adds_no_trust(tmp_path):
    root, _ = _key()
    intruder, _ = _key()
    store = KeyStore(tmp_path / "keys.json")
    store.save([intruder])
    assert store.trusted({root["key_id"]: root["public_key"]}) == {root["key_id"]: root["public_key"]}
