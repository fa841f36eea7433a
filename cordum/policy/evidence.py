"""Evidence helpers: redact call arguments per the policy's `evidence:` settings, digest arguments.

Redaction is recursive: a key whose name matches one of `evidence.redact` (case-insensitive globs,
e.g. "content", "*token*") has its value replaced by "[REDACTED]"; with `redact_secret_values`
(default on), string values in which the secret scanner (`secrets.py`: detect-secrets' detectors and a few
more) finds a credential are replaced too; strings longer than `max_value_bytes`
(UTF-8) are truncated with a marker. `args_digest` is always over the original arguments.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from .engine import Call, CompiledPolicy
from .secrets import default_scanner

__all__ = ["REDACTED", "args_digest", "canonical_json", "mask_secrets", "redact_arguments", "redact_target", "redact_value"]

REDACTED = "[REDACTED]"
_MAX_DEPTH = 32

# `DB_PASSWORD=hunter2`, `api_key: "..."`: a literal after a credential-named key in free text (diffs, commands).
# Code such as `token = get_token()` or `password = form["password"]` is left alone: only literals are values.
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?P<key>\b[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api_?key|private_?key|credential)[A-Za-z0-9_.-]*"
    r"[\"']?\s*[:=]\s*)"
    r"(?:\"[^\"\n]+\"|'[^'\n]+'|[^\s\"',;()\[\]{}]+(?=[\s,;]|$))"
)


def mask_secrets(text: str) -> str:
    """Free text with each secret the scanner finds replaced by a label naming its kind (one detector for tool
    results, approval diffs and evidence), then literal values of credential-named keys replaced."""
    text = default_scanner().mask(text)[0]
    return _SECRET_ASSIGNMENT.sub(lambda m: m.group("key") + REDACTED, text)


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, compact, UTF-8 (orjson)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def args_digest(arguments: dict) -> str:
    """"sha256:<hex>" of the canonical JSON of the arguments."""
    return "sha256:" + hashlib.sha256(canonical_json(arguments if arguments is not None else {})).hexdigest()


def _truncate(s: str, limit: int) -> str:
    b = s.encode("utf-8")
    if len(b) <= limit:
        return s
    cut = b[:limit].decode("utf-8", "ignore")
    return f"{cut}...[truncated {len(b) - len(cut.encode('utf-8'))} bytes]"


def redact_value(value: Any, *, key_matches, max_bytes: int, scan: bool, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        return "[TOO DEEP]"
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            ks = str(k)
            if key_matches(ks):
                out[ks] = REDACTED
            else:
                out[ks] = redact_value(v, key_matches=key_matches, max_bytes=max_bytes, scan=scan, depth=depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [redact_value(v, key_matches=key_matches, max_bytes=max_bytes, scan=scan, depth=depth + 1) for v in value]
    if isinstance(value, str):
        if scan and default_scanner().has_secret(value):
            return REDACTED
        return _truncate(value, max_bytes)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _truncate(str(value), max_bytes)


def redact_arguments(compiled: CompiledPolicy, call: Call | dict) -> dict:
    """The call's arguments as they may be stored in an evidence record."""
    if isinstance(call, Call):
        arguments = call.arguments
    elif isinstance(call, dict) and ("arguments" in call or "args" in call):
        arguments = call.get("arguments", call.get("args")) or {}
    else:
        arguments = call or {}
    settings = compiled.policy.evidence
    return redact_value(
        arguments, key_matches=compiled.redact_matcher, max_bytes=settings.max_value_bytes, scan=settings.redact_secret_values
    )


def _named_secrets(value: Any, key_matches, out: list[str], depth: int = 0) -> None:
    """String values of arguments whose key the policy redacts by name (collected into `out`)."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if key_matches(str(k)):
                if isinstance(v, str | int | float) and not isinstance(v, bool):
                    out.append(str(v))
            else:
                _named_secrets(v, key_matches, out, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _named_secrets(v, key_matches, out, depth + 1)


def redact_target(compiled: CompiledPolicy, target: str, arguments: dict | None) -> str:
    """The evidence target as it may be stored: the target is rendered from the raw arguments (rules match
    on it), so what `redact_arguments` hides must not come back through it. A redacted-by-name argument's
    value becomes "[REDACTED]" wherever it appears; credential-shaped substrings are replaced in place, so
    `git push https://bob:ghp_...@github.com/acme/x.git` keeps its shape."""
    if not target:
        return target
    settings = compiled.policy.evidence
    hidden: list[str] = []
    _named_secrets(arguments or {}, compiled.redact_matcher, hidden)
    for value in sorted(hidden, key=len, reverse=True):
        if value and (value == target or len(value) >= 4):
            target = target.replace(value, REDACTED)
    if settings.redact_secret_values:
        target = mask_secrets(target)
    return _truncate(target, settings.max_value_bytes)
