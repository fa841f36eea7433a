"""Encryption of secrets at rest (deploy keys, access tokens, signing keys).

Fernet (AES-128-CBC + HMAC) from `cryptography`, keyed by CORDUM_ENCRYPTION_KEY or, when
unset, a key derived from SECRET_KEY.
"""

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet
from django.conf import settings


def _fernet() -> Fernet:
    material = settings.ENCRYPTION_KEY or settings.SECRET_KEY
    key = hashlib.sha256(b"cordum-encryption:" + material.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(plaintext: str | bytes) -> str:
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    return _fernet().encrypt(data).decode()


def decrypt(token: str) -> bytes:
    return _fernet().decrypt(token.encode())


def token_digest(token: str) -> str:
    """Digest for high-entropy bearer tokens: a keyless sha256 is enough and constant-cost to check."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
