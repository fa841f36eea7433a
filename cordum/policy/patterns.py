"""Pattern compilation: topic/name globs, `**`-aware path globs, linear-time regexes, path bounds.

Speed and safety: topic and name globs use CPython's `fnmatch.translate`, whose output emulates
atomic groups so it cannot backtrack catastrophically. Path globs with at most one variable-length
wildcard (the common `**/.env`, `*.pem`, `src/**`) compile to a stdlib regex that is linear; anything
more complex, and every user regex, runs on RE2 (linear time, so a policy cannot hang the sidecar).
User regexes get a literal prefilter (a substring every match must contain), so most non-matching
inputs never reach RE2.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Callable

try:  # RE2 logs parse errors to stderr through absl; the loader reports them properly instead.
    import re2
except ImportError:  # pragma: no cover - google-re2 is a hard dependency of the policy engine
    re2 = None

Matcher = Callable[[str], bool]

_WILD = "*?["


def glob_error(pattern: str) -> str | None:
    """A plain-language problem with a glob, or None when it is well formed."""
    if not isinstance(pattern, str):
        return "must be a string"
    if pattern == "":
        return "empty pattern"
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                return f"unterminated character class starting at position {i + 1}"
            body = pattern[i + 1 : j].lstrip("!^")
            for k in range(1, len(body) - 1):
                if body[k] == "-" and body[k - 1] > body[k + 1]:
                    return f"invalid range '{body[k - 1]}-{body[k + 1]}' in character class"
            i = j + 1
            continue
        i += 1
    return None


def has_wildcard(pattern: str) -> bool:
    return any(c in pattern for c in _WILD)


def literal_prefix(pattern: str) -> str:
    for i, c in enumerate(pattern):
        if c in _WILD:
            return pattern[:i]
    return pattern


def compile_name_glob(patterns: tuple[str, ...] | list[str], *, ignore_case: bool = True) -> Matcher:
    """Shell-style globs where `*` spans any characters (dots and slashes included); any-of."""
    literals = set()
    regexes = []
    for p in patterns:
        if has_wildcard(p):
            regexes.append(fnmatch.translate(p))
        else:
            literals.add(p.lower() if ignore_case else p)
    if regexes:
        rx = re.compile("|".join(f"(?:{r})" for r in regexes), re.IGNORECASE if ignore_case else 0)
        match = rx.match
        if literals:
            if ignore_case:
                return lambda s: s.lower() in literals or match(s) is not None
            return lambda s: s in literals or match(s) is not None
        return lambda s: match(s) is not None
    if ignore_case:
        return lambda s: s.lower() in literals
    return literals.__contains__


def _segment_regex(seg: str) -> tuple[str, int]:
    """Regex for one path segment (no '/'), and its count of variable-length wildcards."""
    out = []
    stars = 0
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c == "*":
            while i < n and seg[i] == "*":
                i += 1
            out.append("[^/]*")
            stars += 1
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            neg = j < n and seg[j] in "!^"
            if neg:
                j += 1
            start = j
            if j < n and seg[j] == "]":
                j += 1
            while j < n and seg[j] != "]":
                j += 1
            body = seg[start:j].replace("\\", "\\\\")
            out.append(f"[^/{body}]" if neg else f"[{body}]")
            i = j + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out), stars


def path_glob_regex(pattern: str) -> tuple[str, int]:
    """Translate a `**`-aware path glob to a regex (full match) and count its variable wildcards."""
    segs = pattern.split("/")
    parts: list[str] = []
    stars = 0
    for idx, seg in enumerate(segs):
        last = idx == len(segs) - 1
        if seg == "**":
            stars += 1
            if last:
                parts.append(".*")
            else:
                parts.append("(?:.*/)?" if idx == 0 else "(?:[^/]*/)*?")
                if idx != 0:
                    stars += 1
            continue
        rx, s = _segment_regex(seg)
        stars += s
        parts.append(rx + ("" if last else "/"))
    # "a/**/b": the middle "**/" part must also allow zero segments; built above with (?:...)*?.
    return "".join(parts), stars


def normalize_path(value: str) -> str:
    """Collapse `.`, `..` and duplicate slashes so `a/../.env` cannot dodge `**/.env`."""
    if not value:
        return value
    if "/." not in value and "//" not in value and "\\" not in value and value[0] != "." and value[-1] != "/":
        return value
    norm = posixpath.normpath(value.replace("\\", "/"))
    if value.startswith("//") and not value.startswith("///"):
        norm = "/" + norm.lstrip("/")
    return norm


def compile_path_glob(patterns: tuple[str, ...] | list[str]) -> Matcher:
    """Any-of path globs: `*`/`?`/`[..]` stay inside one segment, `**` spans segments.

    Values are normalised first. A pattern without '/' (e.g. `*.pem`) matches the base name only
    when it starts with `**/`; a bare `*.pem` matches the whole value, like a shell glob in the
    current directory. Case-insensitive, as the file systems of macOS and Windows are: on those a
    `**/.env` rule must catch `.ENV`, which opens the same file.
    """
    literals: set[str] = set()
    last_seg: list[str] = []
    simple: list[str] = []
    complex_: list[str] = []
    for p in patterns:
        if not has_wildcard(p):
            literals.add(normalize_path(p).lower())
            continue
        if p.startswith("**/") and "/" not in p[3:] and "**" not in p[3:]:
            rx, s = _segment_regex(p[3:])
            if s <= 1:
                last_seg.append(rx)
                continue
        rx, s = path_glob_regex(p)
        (simple if s <= 1 else complex_).append(rx)
    flags = re.DOTALL | re.IGNORECASE
    # The alternation is grouped before \Z: every pattern must match the whole value, not just the last one.
    simple_match = re.compile("(?:" + "|".join(f"(?:{r})" for r in simple) + r")\Z", flags).match if simple else None
    complex_match = None
    if complex_:
        if re2 is None:  # pragma: no cover
            complex_match = re.compile("(?:" + "|".join(f"(?:{r})" for r in complex_) + r")\Z", flags).match
        else:
            complex_match = re2.compile("(?si)" + "|".join(f"(?:{r})" for r in complex_)).fullmatch

    last_match = None
    if last_seg:
        last_match = re.compile("(?:" + "|".join(f"(?:{r})" for r in last_seg) + r")\Z", flags).match

    def match(value: str) -> bool:
        v = normalize_path(value)
        if v.lower() in literals:
            return True
        if last_match is not None and last_match(v[v.rfind("/") + 1 :]) is not None:
            return True
        if simple_match is not None and simple_match(v) is not None:
            return True
        return complex_match is not None and complex_match(v) is not None

    return match


def regex_error(pattern: str) -> str | None:
    """A plain-language problem with a regex, or None. RE2 syntax: no backreferences or lookaround."""
    if not isinstance(pattern, str):
        return "must be a string"
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    if re2 is None:  # pragma: no cover
        return None
    if re.search(r"\(\?<?[=!]", pattern):
        return "lookahead/lookbehind is not supported (RE2 syntax, linear time)"
    if re.search(r"\\[1-9]|\(\?P=", pattern):
        return "backreferences are not supported (RE2 syntax, linear time)"
    try:
        re2.compile(pattern)
    except Exception as exc:  # re2.error carries bytes
        msg = exc.args[0] if exc.args else str(exc)
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        return f"not supported by RE2: {msg}"
    return None


def _required_literals(pattern: str) -> tuple[tuple[str, ...], bool]:
    """Substrings every match must contain (from the top-level concatenation), and case-folding."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
        from re._constants import BRANCH, LITERAL, SUBPATTERN  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover
        return (), False
    try:
        parsed = sre_parse.parse(pattern)
    except Exception:
        return (), False
    icase = bool(parsed.state.flags & re.IGNORECASE)
    items = list(parsed)
    # A pattern wrapped in a single group, e.g. "(git push)": look inside it.
    while len(items) == 1 and items[0][0] is SUBPATTERN and not items[0][1][1] and not items[0][1][2]:
        items = list(items[0][1][3])
    groups: list[tuple[str, ...]] = []
    cur: list[str] = []
    for op, av in items:
        if op is LITERAL:
            cur.append(chr(av))
            continue
        if cur:
            groups.append(("".join(cur),))
            cur = []
        if op is SUBPATTERN and not av[1] and not av[2]:  # skip scoped flags such as (?i:...)
            alts = _literal_alternatives(av[3], BRANCH, LITERAL)
            if alts:
                groups.append(alts)
    if cur:
        groups.append(("".join(cur),))
    groups = [g for g in groups if all(len(x) >= 2 for x in g)]
    groups.sort(key=lambda g: min(len(x) for x in g), reverse=True)
    return tuple(tuple(x.lower() if icase else x for x in g) for g in groups[:3]), icase


def _literal_alternatives(sub, BRANCH, LITERAL) -> tuple[str, ...] | None:
    """("cat", "less") for a group "(cat|less)" whose branches all start with a literal run."""
    items = list(sub)
    if len(items) != 1 or items[0][0] is not BRANCH:
        return None
    out = []
    for branch in items[0][1][1]:
        run = []
        for op, av in branch:
            if op is not LITERAL:
                break
            run.append(chr(av))
        if not run:
            return None
        out.append("".join(run))
    return tuple(out)


def compile_regexes(patterns: tuple[str, ...] | list[str]) -> Matcher:
    """Any-of RE2 searches (unanchored; anchor with ^ and $) behind a literal prefilter."""
    compiled = []
    for p in patterns:
        lits, icase = _required_literals(p)
        search = (re2.compile(p) if re2 is not None else re.compile(p)).search
        compiled.append((lits, icase, search))

    def match(value: str) -> bool:
        lowered = None
        for lits, icase, search in compiled:
            if lits:
                if icase:
                    if lowered is None:
                        lowered = value.lower()
                    hay = lowered
                else:
                    hay = value
                if not all(any(alt in hay for alt in group) for group in lits):
                    continue
            if search(value) is not None:
                return True
        return False

    return match


def resolve_path(path: str, base: str) -> str:
    """Normalise `path`, resolving a relative one against `base` (if known)."""
    p = path.replace("\\", "/")
    if base and not p.startswith("/"):
        p = base.rstrip("/") + "/" + p
    return normalize_path(p)


def is_under(path: str, root: str) -> bool:
    """True when normalised `path` is `root` or inside it. Root "." means "relative, not escaping"."""
    if root in ("", "."):
        return not path.startswith("/") and path != ".." and not path.startswith("../")
    if root == "/":
        return path.startswith("/")
    return path == root or path.startswith(root + "/")


def target_matches(pattern: str, target: str) -> bool:
    """Whether an evidence target falls under a session approval's target pattern: the target itself, or a
    shell-style glob (`*` spans slashes), case-sensitive. The control plane checks a reviewer's pattern with this
    and the sidecar applies the grant with it, so both read a pattern the same way."""
    if pattern == target:
        return True
    return has_wildcard(pattern) and compile_name_glob((pattern,), ignore_case=False)(target or "")


def target_pattern_error(pattern: str, target: str) -> str | None:
    """Why `pattern` cannot scope a session approval of the call on `target` (it must cover that call), or None."""
    problem = glob_error(pattern) if has_wildcard(pattern) else None
    if problem:
        return f"invalid target pattern '{pattern}': {problem}"
    if not target_matches(pattern, target):
        return f"the target pattern '{pattern}' does not cover this call's target '{target}'"
    return None
