"""Signed policy bundles: format, signing, verification, on-disk store and the long-polling client.

Pure Python (no Django): the control plane builds and signs bundles with these functions, the
sidecar verifies and fetches them with `BundleClient`.

Bundle JSON (see .cordum-contracts.md):

    {"manifest": {"org", "repo", "repo_id", "commit", "version", "sequence", "rollback",
                  "created_at", "content_sha256"},
     "policy": <Policy.to_dict()>,
     "signatures": [{"key_id": "k_...", "alg": "ed25519", "signature": "<base64>"}]}

Signed bytes are `canonical_json({"manifest": ..., "policy": ...})`. A bundle is accepted only when
its content hash matches, at least one signature comes from a trusted key id, and every signature
that claims a trusted key id verifies. A client never moves to a lower `sequence` unless the
bundle's manifest says `rollback: true`.

Key rotation: when the control plane creates a signing key, each key active at that moment signs an
endorsement of it (`key_endorse`: Ed25519 over `canonical_json({"type": ENDORSEMENT_TYPE, "key_id", "alg",
"public_key"})`). GET /api/v1/keys serves the keys with their endorsements. A sidecar that meets a bundle
signed by a key id it does not know fetches them and trusts a key only when an endorsement chain leads to it
from a key it already trusts (`keys_learn`); the learned keys are kept in a `KeyStore` file and re-verified
from the configured `trusted_keys` each time it is read, so editing that file cannot add trust.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import inspect
import json
import logging
import os
import random
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cordum.policy.evidence import canonical_json  # the one canonical form (signed bytes)

__all__ = [
    "ALG",
    "BundleClient",
    "BundleError",
    "BundleStore",
    "bundle_build",
    "bundle_etag",
    "bundle_sign",
    "bundle_verify",
    "key_endorse",
    "keys_learn",
    "KeyStore",
    "canonical_json",
    "content_sha256",
    "generate_keypair",
    "key_id_for",
    "normalize_trusted_keys",
    "public_key_for",
]

log = logging.getLogger("cordum.sidecar.bundles")

ALG = "ed25519"
MANIFEST_FIELDS = ("org", "repo", "repo_id", "commit", "version", "sequence", "rollback", "created_at",
                   "content_sha256")


class BundleError(Exception):
    """A bundle was refused: malformed, tampered, unsigned by a trusted key, or a downgrade."""


# --- format -------------------------------------------------------------------------------------
def content_sha256(policy_dict: Mapping) -> str:
    return hashlib.sha256(canonical_json(policy_dict)).hexdigest()


def _signed_bytes(bundle: Mapping) -> bytes:
    return canonical_json({"manifest": bundle["manifest"], "policy": bundle["policy"]})


def bundle_build(*, policy_dict: Mapping, manifest: Mapping) -> dict:
    """A new unsigned bundle; `content_sha256` is computed from the policy (any given value is replaced)."""
    manifest = dict(manifest)
    manifest["content_sha256"] = content_sha256(policy_dict)
    manifest.setdefault("rollback", False)
    return {"manifest": manifest, "policy": copy.deepcopy(dict(policy_dict)), "signatures": []}


def bundle_etag(bundle: Mapping | None) -> str | None:
    """The HTTP ETag the control plane sends for a bundle: `"<content_sha256>-<sequence>"`."""
    if not bundle:
        return None
    manifest = bundle.get("manifest") or {}
    return f'"{manifest.get("content_sha256")}-{manifest.get("sequence")}"'


# --- keys ---------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _private_key(private_key: str | bytes | Ed25519PrivateKey) -> Ed25519PrivateKey:
    if isinstance(private_key, Ed25519PrivateKey):
        return private_key
    raw = _unb64(private_key) if isinstance(private_key, str) else private_key
    return Ed25519PrivateKey.from_private_bytes(raw)


def generate_keypair() -> tuple[str, str]:
    """A new Ed25519 key pair as (base64 raw private key, base64 raw public key)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return _b64(private), public_key_for(key)


def public_key_for(private_key: str | bytes | Ed25519PrivateKey) -> str:
    """Base64 raw public key of a private key."""
    public = _private_key(private_key).public_key()
    return _b64(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def key_id_for(public_key_b64: str) -> str:
    """A stable key id derived from the public key: `k_` + 16 hex digits of its sha256."""
    return "k_" + hashlib.sha256(_unb64(public_key_b64)).hexdigest()[:16]


ENDORSEMENT_TYPE = "cordum.key-endorsement.v1"  # domain separation: an endorsement is never a bundle signature


def _endorsed_bytes(key_id: str, public_key: str) -> bytes:
    return canonical_json({"type": ENDORSEMENT_TYPE, "key_id": key_id, "alg": ALG, "public_key": public_key})


def key_endorse(*, key_id: str, public_key: str, signer_key_id: str,
                signer_private_key: str | bytes | Ed25519PrivateKey) -> dict:
    """An already trusted key (`signer`) vouches for a new key: {"key_id": signer, "alg", "signature"}."""
    signature = _private_key(signer_private_key).sign(_endorsed_bytes(key_id, public_key))
    return {"key_id": signer_key_id, "alg": ALG, "signature": _b64(signature)}


def _endorsed_by(key: Mapping, trusted: Mapping[str, str]) -> bool:
    for endorsement in key.get("endorsements") or []:
        if not isinstance(endorsement, Mapping) or endorsement.get("alg") != ALG:
            continue
        signer = endorsement.get("key_id")
        if signer not in trusted:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(_unb64(trusted[signer])).verify(
                _unb64(str(endorsement.get("signature", ""))), _endorsed_bytes(key["key_id"], key["public_key"]))
        except (InvalidSignature, ValueError, TypeError):
            continue
        return True
    return False


def keys_learn(trusted_keys, offered: list) -> dict[str, str]:
    """The keys of `offered` ({key_id, public_key, endorsements}) that an endorsement chain links to a trusted
    key, added to `trusted_keys`. A key whose id does not match its public key, or whose only endorsements
    are unsigned or badly signed, is left out."""
    trusted = dict(normalize_trusted_keys(trusted_keys))
    candidates = []
    for key in offered if isinstance(offered, list) else []:
        if not isinstance(key, Mapping) or not isinstance(key.get("public_key"), str):
            continue
        try:
            if key.get("key_id") != key_id_for(key["public_key"]):
                continue
        except ValueError:
            continue
        candidates.append(key)
    learned = True
    while learned:  # chains: A trusted -> endorses B -> endorses C
        learned = False
        for key in candidates:
            if key["key_id"] not in trusted and _endorsed_by(key, trusted):
                trusted[key["key_id"]] = key["public_key"]
                learned = True
    return trusted


class KeyStore:
    """Keys offered by the control plane, kept on disk; `trusted()` re-derives trust from the configured keys."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    def offered(self) -> list:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable key file %s: %s", self.path, exc)
            return []
        return data if isinstance(data, list) else []

    def trusted(self, configured) -> dict[str, str]:
        return keys_learn(configured, self.offered())

    def save(self, offered: list) -> None:
        BundleStore(self.path).save(offered)


def normalize_trusted_keys(trusted_keys) -> dict[str, str]:
    """Accept {key_id: public_key} or [{"key_id", "public_key"}, ...] (the /api/v1/keys shape)."""
    if trusted_keys is None:
        return {}
    if isinstance(trusted_keys, Mapping):
        if "keys" in trusted_keys and isinstance(trusted_keys["keys"], list):
            return normalize_trusted_keys(trusted_keys["keys"])
        return {str(k): str(v) for k, v in trusted_keys.items()}
    return {str(item["key_id"]): str(item["public_key"]) for item in trusted_keys}


# --- sign / verify ------------------------------------------------------------------------------
def bundle_sign(bundle: Mapping, *, key_id: str, private_key: str | bytes | Ed25519PrivateKey) -> dict:
    """Return a copy of `bundle` with one more Ed25519 signature (a key id signs at most once)."""
    signed = copy.deepcopy(dict(bundle))
    signature = _private_key(private_key).sign(_signed_bytes(signed))
    signatures = [s for s in signed.get("signatures", []) if s.get("key_id") != key_id]
    signatures.append({"key_id": key_id, "alg": ALG, "signature": _b64(signature)})
    signed["signatures"] = signatures
    return signed


def bundle_verify(bundle: Mapping, trusted_keys) -> None:
    """Raise BundleError unless the bundle is well formed and signed by at least one trusted key.

    Signatures by key ids we do not trust are ignored (another organisation's rotation may add
    them), but a signature that names a trusted key id and does not verify refuses the bundle.
    """
    trusted = normalize_trusted_keys(trusted_keys)
    if not isinstance(bundle, Mapping):
        raise BundleError("bundle is not a JSON object")
    manifest, policy, signatures = bundle.get("manifest"), bundle.get("policy"), bundle.get("signatures")
    if not isinstance(manifest, Mapping) or not isinstance(policy, Mapping) or not isinstance(signatures, list):
        raise BundleError("bundle needs 'manifest' and 'policy' objects and a 'signatures' list")
    missing = [f for f in ("org", "commit", "version", "sequence", "content_sha256") if f not in manifest]
    if missing:
        raise BundleError(f"manifest lacks {', '.join(missing)}")
    if not isinstance(manifest["sequence"], int) or isinstance(manifest["sequence"], bool):
        raise BundleError("manifest.sequence must be an integer")
    try:
        digest = content_sha256(policy)
        signed_bytes = _signed_bytes(bundle)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"bundle is not canonical JSON: {exc}") from None
    if digest != manifest["content_sha256"]:
        raise BundleError("policy content does not match manifest.content_sha256 (tampered bundle)")
    if not signatures:
        raise BundleError("bundle is not signed")
    verified = []
    for entry in signatures:
        if not isinstance(entry, Mapping):
            raise BundleError("malformed signature entry")
        key_id = entry.get("key_id")
        if key_id not in trusted:
            continue
        if entry.get("alg") != ALG:
            raise BundleError(f"signature by {key_id} uses unsupported algorithm {entry.get('alg')!r}")
        try:
            public = Ed25519PublicKey.from_public_bytes(_unb64(trusted[key_id]))
            public.verify(_unb64(str(entry.get("signature", ""))), signed_bytes)
        except (InvalidSignature, ValueError, TypeError):
            raise BundleError(f"signature by {key_id} does not verify (tampered bundle)") from None
        verified.append(key_id)
    if not verified:
        named = ", ".join(sorted(str(s.get("key_id")) for s in signatures if isinstance(s, Mapping)))
        raise BundleError(f"bundle is not signed by a trusted key (signed by: {named or 'nobody'})")


# --- store --------------------------------------------------------------------------------------
class BundleStore:
    """The last good bundle on disk, written atomically (temp file, fsync, rename, fsync dir)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    def load(self) -> dict | None:
        try:
            return json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable bundle file %s: %s", self.path, exc)
            return None

    def save(self, bundle: Mapping) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(canonical_json(bundle))
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# --- client -------------------------------------------------------------------------------------
class BundleClient:
    """Fetches the agent's bundle from the control plane, verifies it and keeps the last good one.

    `fetch(wait)` does one (long-)poll; `run_forever()` loops with `?wait=30`, backing off with
    jitter on errors. `current` is the verified bundle in force (loaded from `store` at start if it
    still verifies), `shadow` the verified shadow bundle a rollout may add. `on_update(bundle)` (sync
    or async) is called after a new bundle is accepted.
    """

    LONG_POLL_SECONDS = 30
    BACKOFF_BASE = 1.0
    BACKOFF_MAX = 60.0

    def __init__(self, base_url: str, token: str, trusted_keys, store: BundleStore | str | os.PathLike | None, *,
                 on_update: Callable[[dict], Any] | None = None, http_client=None, key_store: KeyStore | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.configured_keys = normalize_trusted_keys(trusted_keys)
        self.key_store = key_store
        self.trusted_keys = key_store.trusted(self.configured_keys) if key_store else dict(self.configured_keys)
        self.store = store if isinstance(store, BundleStore) or store is None else BundleStore(store)
        self.on_update = on_update
        self._http = http_client
        self._current: dict | None = None
        self._shadow: dict | None = None
        self._etag: str | None = None  # last ETag seen (accepted or refused), sent as If-None-Match
        self.last_error: str | None = None
        self._stopped = False
        if self.store is not None:
            stored = self.store.load()
            if stored is not None:
                try:
                    bundle_verify(stored, self.trusted_keys)
                except BundleError as exc:
                    log.warning("stored bundle %s refused: %s", self.store.path, exc)
                else:
                    self._current = stored
                    self._etag = bundle_etag(stored)

    @property
    def current(self) -> dict | None:
        return self._current

    @property
    def shadow(self) -> dict | None:
        return self._shadow

    @property
    def sequence(self) -> int | None:
        return self._current["manifest"]["sequence"] if self._current else None

    def _client(self):
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=self.LONG_POLL_SECONDS + 15.0))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def stop(self) -> None:
        self._stopped = True

    def _check_sequence(self, bundle: dict) -> None:
        if self._current is None:
            return
        new, held = bundle["manifest"]["sequence"], self._current["manifest"]["sequence"]
        if new <= held:  # a rollback too is a new, higher sequence carrying the older content
            raise BundleError(
                f"refusing downgrade to sequence {new} ({bundle['manifest'].get('version')}) at or below the held "
                f"sequence {held} ({self._current['manifest'].get('version')}); a rollback is published as a new, "
                "higher sequence, so an old bundle cannot be replayed"
            )

    def accept(self, bundle: dict) -> bool:
        """Verify `bundle` and make it current (persisting it). False if it is the one already held."""
        bundle_verify(bundle, self.trusted_keys)
        if self._current is not None and bundle_etag(bundle) == bundle_etag(self._current):
            return False
        self._check_sequence(bundle)
        if self.store is not None:
            self.store.save(bundle)
        self._current = bundle
        return True

    async def fetch(self, wait: int = 0) -> bool:
        """One request to GET /api/v1/bundle. True if a new verified bundle (or shadow) was accepted.

        Raises BundleError when the server's bundle is refused (the held bundle stays in force) and
        httpx errors when the control plane cannot be reached.
        """
        import httpx

        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if self._etag:
            headers["If-None-Match"] = self._etag
        params = {"wait": int(wait)} if wait else None
        response = await self._client().get(
            f"{self.base_url}/api/v1/bundle", params=params, headers=headers,
            timeout=httpx.Timeout(10.0, read=float(wait) + 15.0),
        )
        if response.status_code == 304:
            return False
        if response.status_code == 404:
            return False  # nothing published yet: keep what we hold (or fail closed with nothing)
        if response.status_code != 200:
            raise BundleError(f"control plane answered {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
        except ValueError:
            raise BundleError("control plane answered with invalid JSON") from None
        self._etag = response.headers.get("ETag") or bundle_etag(body)  # a refused bundle is not re-sent
        shadow = body.pop("shadow_bundle", None) if isinstance(body, dict) else None
        if self._unknown_signers(body) or self._unknown_signers(shadow):
            await self.refresh_keys()
        changed = self.accept(body)
        shadow_changed, shadow_error = False, None
        if shadow is None:
            shadow_changed, self._shadow = self._shadow is not None, None
        else:
            try:
                bundle_verify(shadow, self.trusted_keys)
            except BundleError as exc:  # the enforced bundle still applies; only the shadow is dropped
                shadow_error = BundleError(f"shadow bundle refused: {exc}")
                shadow_changed, self._shadow = self._shadow is not None, None
            else:
                if bundle_etag(shadow) != bundle_etag(self._shadow):
                    self._shadow, shadow_changed = shadow, True
        if (changed or shadow_changed) and self.on_update is not None:
            result = self.on_update(self._current)
            if inspect.isawaitable(result):
                await result
        if shadow_error is not None:
            raise shadow_error
        return changed or shadow_changed

    def _unknown_signers(self, bundle) -> set[str]:
        if not isinstance(bundle, Mapping) or not isinstance(bundle.get("signatures"), list):
            return set()
        return {str(s.get("key_id")) for s in bundle["signatures"]
                if isinstance(s, Mapping) and s.get("key_id") not in self.trusted_keys}

    async def refresh_keys(self) -> set[str]:
        """Fetch GET /api/v1/keys and trust the keys endorsed (through a chain) by a key already trusted.

        Returns the key ids newly trusted. Errors are logged, not raised: the bundle's own check then refuses
        a bundle signed only by a key that could not be learned."""
        if self.key_store is None:
            return set()
        try:
            response = await self._client().get(f"{self.base_url}/api/v1/keys",
                                                headers={"Authorization": f"Bearer {self.token}"})
            response.raise_for_status()
            body = response.json()
            offered = [*(body.get("keys") or []), *(body.get("retired") or [])]
        except Exception as exc:  # network, status, JSON shape: keep the keys we have
            log.warning("could not fetch signing keys: %s", exc)
            return set()
        merged = {k.get("key_id"): k for k in self.key_store.offered() if isinstance(k, Mapping)}
        merged.update({k.get("key_id"): k for k in offered if isinstance(k, Mapping)})
        trusted = keys_learn(self.configured_keys, list(merged.values()))
        new = set(trusted) - set(self.trusted_keys)
        if new:
            self.key_store.save([merged[k] for k in sorted(set(trusted) - set(self.configured_keys))])
            log.warning("trusting rotated signing key(s) %s (endorsed by a trusted key)", ", ".join(sorted(new)))
        refused = {k for k in merged if k not in trusted}
        if refused:
            log.warning("signing key(s) %s refused: no valid endorsement by a trusted key", ", ".join(sorted(refused)))
        self.trusted_keys = trusted
        return new

    async def run_forever(self) -> None:
        """Long-poll until stop(); exponential backoff with full jitter after errors."""
        failures = 0
        while not self._stopped:
            try:
                await self.fetch(wait=self.LONG_POLL_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network errors, 5xx, refused bundles: keep the held bundle
                failures += 1
                self.last_error = str(exc) or type(exc).__name__
                delay = min(self.BACKOFF_MAX, self.BACKOFF_BASE * 2 ** min(failures, 10))
                delay = random.uniform(delay / 2, delay)
                log.warning("bundle fetch failed (%s); retrying in %.1fs", self.last_error, delay)
                await asyncio.sleep(delay)
            else:
                failures = 0
                self.last_error = None
