"""The bundle format and the pure-Python verification rules the sidecar relies on (no Django, no network)."""

import json

import pytest

from cordum.sidecar.bundles import (
    BundleClient,
    BundleError,
    BundleStore,
    bundle_build,
    bundle_etag,
    bundle_sign,
    bundle_verify,
    canonical_json,
    generate_keypair,
    key_id_for,
)

POLICY = {"version": "v1", "defaults": {"decision": "deny"}, "rules": [{"id": "r1", "decision": "allow"}]}


def _keys():
    private, public = generate_keypair()
    return key_id_for(public), private, public


def _bundle(sequence=1, rollback=False, key=None, policy=POLICY):
    key_id, private, public = key or _keys()
    manifest = {"org": "acme", "repo": "policies", "repo_id": 1, "commit": "a" * 40, "version": f"main@{sequence:07d}",
                "sequence": sequence, "rollback": rollback, "created_at": "2026-01-01T00:00:00Z"}
    return bundle_sign(bundle_build(policy_dict=policy, manifest=manifest), key_id=key_id, private_key=private)


def test_canonical_json_is_sorted_compact_utf8():
    assert canonical_json({"b": 1, "a": ["é", {"d": 2, "c": 3}]}) == '{"a":["é",{"c":3,"d":2}],"b":1}'.encode()


def test_signed_bundle_verifies_with_its_trusted_key():
    key = _keys()
    bundle = _bundle(key=key)
    bundle_verify(bundle, {key[0]: key[2]})
    assert bundle["manifest"]["content_sha256"] and bundle["signatures"][0]["alg"] == "ed25519"


def test_tampered_policy_is_refused():
    key = _keys()
    bundle = _bundle(key=key)
    bundle["policy"]["defaults"]["decision"] = "allow"
    with pytest.raises(BundleError, match="tampered"):
        bundle_verify(bundle, {key[0]: key[2]})


def test_tampered_manifest_with_recomputed_hash_fails_the_signature():
    key = _keys()
    bundle = _bundle(key=key)
    bundle["manifest"]["sequence"] = 99
    with pytest.raises(BundleError, match="does not verify"):
        bundle_verify(bundle, {key[0]: key[2]})


def test_bundle_signed_only_by_unknown_key_id_is_refused():
    trusted = _keys()
    bundle = _bundle(key=_keys())
    with pytest.raises(BundleError, match="not signed by a trusted key"):
        bundle_verify(bundle, {trusted[0]: trusted[2]})


def test_two_keys_sign_during_rotation_and_either_is_enough():
    old, new = _keys(), _keys()
    bundle = bundle_sign(_bundle(key=old), key_id=new[0], private_key=new[1])
    bundle_verify(bundle, {old[0]: old[2]})
    bundle_verify(bundle, [{"key_id": new[0], "alg": "ed25519", "public_key": new[2]}])


def test_store_saves_atomically_and_reloads(tmp_path):
    store = BundleStore(tmp_path / "sub" / "bundle.json")
    assert store.load() is None
    bundle = _bundle()
    store.save(bundle)
    assert store.load() == bundle
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["bundle.json"]
    (tmp_path / "sub" / "bundle.json").write_text("{not json")
    assert store.load() is None


def test_client_refuses_downgrade_and_an_old_bundle_replayed_as_rollback(tmp_path):
    key = _keys()
    client = BundleClient("http://unused", "t", {key[0]: key[2]}, BundleStore(tmp_path / "b.json"))
    assert client.accept(_bundle(sequence=5, key=key))
    with pytest.raises(BundleError, match="downgrade"):
        client.accept(_bundle(sequence=4, key=key, policy={**POLICY, "x": 1}))
    with pytest.raises(BundleError, match="downgrade"):  # an old signed bundle marked rollback is no way back
        client.accept(_bundle(sequence=4, rollback=True, key=key, policy={**POLICY, "x": 1}))
    assert client.sequence == 5
    assert client.accept(_bundle(sequence=6, rollback=True, key=key, policy={**POLICY, "x": 1}))  # older content
    assert client.sequence == 6


def test_client_starts_from_the_stored_bundle_only_if_it_still_verifies(tmp_path):
    key = _keys()
    store = BundleStore(tmp_path / "b.json")
    store.save(_bundle(sequence=3, key=key))
    assert BundleClient("http://x", "t", {key[0]: key[2]}, store).sequence == 3
    assert BundleClient("http://x", "t", {}, store).current is None
    raw = json.loads((tmp_path / "b.json").read_text())
    raw["policy"]["rules"] = []
    (tmp_path / "b.json").write_text(json.dumps(raw))
    assert BundleClient("http://x", "t", {key[0]: key[2]}, store).current is None


def test_etag_is_content_hash_and_sequence():
    bundle = _bundle(sequence=7)
    assert bundle_etag(bundle) == f'"{bundle["manifest"]["content_sha256"]}-7"'
