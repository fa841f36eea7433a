"""Secret scanning of text that crosses the sidecar: tool results on their way to the model.

The detectors are detect-secrets' regex detectors (AWS, GitHub, GitLab, Slack, private keys, JWTs, Stripe,
...), compiled together into one RE2 pattern so a 64 KB result is scanned in one linear pass, plus the
policy's own `results.patterns`. The few detect-secrets patterns RE2 cannot run (keyword-context detectors
written with look-behind) run with Python's `re` only when their keyword occurs in the text.
Findings name the detector ("AWS Access Key") and never carry the value.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import pkgutil
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import re2

__all__ = ["Finding", "SecretScanner", "default_scanner", "masked_label", "screen_result"]

# Not secrets: public IPv4 addresses are everywhere in tool output.
_SKIPPED_KINDS = {"Public IP (ipv4)"}
# Keyword-context detectors RE2 cannot compile (look-behind): run only when all their keywords occur.
_CONTEXT_KEYWORDS = {"Cloudant Credentials": ("cloudant",), "IBM Cloud IAM Key": ("ibm",),
                     "IBM COS HMAC Credentials": ("cos", "secret"), "SoftLayer Credentials": ("softlayer",)}
_NOT_WORD_AFTER = "(?!\\w)"  # RE2 has no look-ahead; a match may then run on into a longer word: still masked
_MAX_REPEAT = re.compile(r"\{(\d+),(\d{4,})\}")  # RE2 caps counted repetition at 1000
# detect-secrets finds a private key by its header line; the whole block is what must not leak.
_PRIVATE_KEY_BLOCK = ("Private Key",
                      r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)")
# Credential shapes detect-secrets does not know (its GitHub detector predates fine-grained tokens, its OpenAI one
# knows only the old key format, and it has no bearer header; its Basic Auth match starts inside the URL).
_MORE_KINDS = [
    ("GitHub Fine-grained Token", r"\bgithub_pat_[A-Za-z0-9_]{40,}"),
    ("API Key (sk-)", r"\bsk-[A-Za-z0-9_-]{20,}"),
    ("Bearer Token", r"(?i:\bbearer\s+[A-Za-z0-9._~+/=-]{16,})"),
    ("Password in URL", r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@"),  # from the scheme, before Basic Auth's match
]


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


def masked_label(kind: str) -> str:
    return f"[REDACTED: {kind}]"


def _detect_secrets_patterns() -> list[tuple[str, re.Pattern]]:
    from detect_secrets import plugins
    from detect_secrets.plugins.base import RegexBasedDetector

    out = []
    for info in pkgutil.iter_modules(plugins.__path__):
        module = importlib.import_module(f"{plugins.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, RegexBasedDetector) and cls is not RegexBasedDetector and cls.__module__ == module.__name__:
                detector = cls()
                if detector.secret_type not in _SKIPPED_KINDS:
                    out += [(detector.secret_type, pattern) for pattern in detector.denylist]
    return out


class SecretScanner:
    """Finds secrets in text; `extra` are (name, regex) pairs (RE2 syntax) from the policy."""

    def __init__(self, extra: Iterable[tuple[str, str]] = ()):
        fast: list[tuple[str, str]] = [_PRIVATE_KEY_BLOCK]
        self._slow: list[tuple[str, tuple[str, ...], re.Pattern]] = []
        for kind, pattern in _detect_secrets_patterns():
            if kind in _CONTEXT_KEYWORDS:
                self._slow.append((kind, _CONTEXT_KEYWORDS[kind], pattern))
                continue
            source = pattern.pattern.removesuffix(_NOT_WORD_AFTER)
            source = _MAX_REPEAT.sub(lambda m: f"{{{m.group(1)},1000}}", source)
            if pattern.flags & re.IGNORECASE:
                source = "(?i:" + source + ")"
            fast.append((kind, source))
        fast += _MORE_KINDS + list(extra)
        self._kinds = [kind for kind, _ in fast]
        self._combined = re2.compile("|".join(f"(?P<d{i}>{source})" for i, (_, source) in enumerate(fast)))

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for m in self._combined.finditer(text):
            if m.end() == m.start():
                continue
            groups = m.groupdict()
            index = next(int(name[1:]) for name, value in groups.items() if value is not None)
            found.append(Finding(self._kinds[index], m.start(), m.end()))
        if self._slow:
            lowered = text.lower()
            for kind, keywords, pattern in self._slow:
                if all(keyword in lowered for keyword in keywords):
                    found += [Finding(kind, m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start()]
        return sorted(found, key=lambda f: (f.start, -f.end))

    def has_secret(self, text: str) -> bool:
        if self._combined.search(text) is not None:
            return True
        lowered = text.lower() if self._slow else ""
        return any(all(k in lowered for k in keywords) and pattern.search(text) for _, keywords, pattern in self._slow)

    def mask(self, text: str, seen: set[str] | None = None) -> tuple[str, Counter]:
        """The text with each secret replaced by a label naming its kind, and how many distinct secrets of each
        kind it held. `seen` (digests of secrets already counted) counts a secret repeated across the strings
        of one result once."""
        findings = self.find(text)
        if not findings:
            return text, Counter()
        seen = set() if seen is None else seen
        parts, counts, cursor = [], Counter(), 0
        for f in findings:
            if f.start < cursor:  # overlaps one already masked
                continue
            parts += [text[cursor:f.start], masked_label(f.kind)]
            digest = hashlib.sha256(f"{f.kind}\0{text[f.start:f.end]}".encode()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                counts[f.kind] += 1
            cursor = f.end
        parts.append(text[cursor:])
        return "".join(parts), counts


@functools.lru_cache(maxsize=16)
def default_scanner(extra: tuple[tuple[str, str], ...] = ()) -> SecretScanner:
    """One compiled scanner per set of policy patterns (compiling the detectors takes milliseconds)."""
    return SecretScanner(extra)


# --- tool results on their way to the agent ----------------------------------------------------
_MAX_DEPTH = 32


def _mask_strings(value: Any, scanner, counts: Counter, seen: set[str], done: dict[str, str],
                  depth: int = 0) -> Any:
    """`done`: strings already screened in this result (a server often sends the same text as content and as
    structured content: scanned once)."""
    if isinstance(value, str):
        if value not in done:
            masked, found = scanner.mask(value, seen)
            counts.update(found)
            done[value] = masked
        return done[value]
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: _mask_strings(v, scanner, counts, seen, done, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_strings(v, scanner, counts, seen, done, depth + 1) for v in value]
    return value


def screen_result(result: dict[str, Any], settings) -> tuple[dict[str, Any] | None, Counter]:
    """(the result to send instead, or None to send it unchanged; kinds of secrets found and how many distinct
    ones: the same key in the text content and the structured content counts once).

    `settings`: the policy's ResultSettings (on_secret mask | withhold | allow, patterns)."""
    if settings.on_secret == "allow":
        return None, Counter()
    counts: Counter = Counter()
    masked = _mask_strings(result, default_scanner(settings.patterns), counts, set(), {})
    if not counts:
        return None, counts
    if settings.on_secret == "withhold":
        found = ", ".join(f"{kind} ×{n}" for kind, n in sorted(counts.items()))
        return {"content": [{"type": "text", "text": f"Cordum withheld this tool result: it contained secrets "
                                                      f"({found}). The policy says results.on_secret: withhold."}],
                "isError": True}, counts
    return masked, counts
