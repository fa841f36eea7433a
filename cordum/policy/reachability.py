"""Which rules can never decide: an enforced rule every call of which an enforced deny also matches.

Checking every rule against every deny was quadratic (10,000 rules took over a minute). `unreachable_rules`
indexes the denies once by each part of their match and meets each rule with only the denies that could
cover it; `covers` still decides each remaining pair, so the result is exactly the pairwise one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from .model import Match, Rule
from .patterns import compile_name_glob, has_wildcard, literal_prefix

_GLOB_FIELDS = ("topics", "agents", "teams", "environments")


def _universal(pattern: str) -> bool:
    return bool(pattern) and pattern.strip("*") == ""


def pattern_covers(broad: str, narrow: str) -> bool:
    """Sound (never wrong when True): every string matching `narrow` also matches `broad`."""
    b, n = broad.lower(), narrow.lower()
    if b == n or _universal(b):
        return True
    if not has_wildcard(n):
        return compile_name_glob([broad])(narrow)
    if b.endswith("*") and not has_wildcard(b[:-1]):
        return literal_prefix(n).startswith(b[:-1])
    return False


def _list_covers(broad: tuple[str, ...], narrow: tuple[str, ...]) -> bool:
    if not broad:
        return True
    if not narrow:
        return any(_universal(b) for b in broad)
    return all(any(pattern_covers(b, n) for b in broad) for n in narrow)


def _arg_key(cond) -> tuple[str, str]:
    return cond.arg, repr(cond.ops)


def covers(d: Match, r: Match) -> bool:
    """Every call `r` matches, `d` matches too (sound: argument conditions must be the same conditions)."""
    if not _list_covers(d.topics, r.topics):
        return False
    if d.risk_tags and (not r.risk_tags or not set(r.risk_tags) <= set(d.risk_tags)):
        return False
    for key in ("agents", "teams", "environments"):
        if not _list_covers(getattr(d, key), getattr(r, key)):
            return False
    if d.after and (not r.after or not set(r.after) <= set(d.after)):  # session labels, any-of like risk tags
        return False
    if d.args:
        r_args = {_arg_key(c) for c in r.args}
        if not all(_arg_key(c) in r_args for c in d.args):
            return False
    return True


class _GlobIndex:
    """Denies by one glob list, answering: which denies might cover a rule whose list starts with `n`?"""

    def __init__(self) -> None:
        self.everything: set[int] = set()  # empty list or a `*`: covers any list
        self.exact: dict[str, set[int]] = defaultdict(set)
        self.prefix: dict[str, set[int]] = defaultdict(set)  # 'abc*' under 'abc'
        self.other: list[tuple[int, str]] = []  # globs with a wildcard before the end

    def add(self, i: int, patterns: tuple[str, ...]) -> None:
        if not patterns or any(_universal(p) for p in patterns):
            self.everything.add(i)
            return
        for p in patterns:
            low = p.lower()
            self.exact[low].add(i)
            if low.endswith("*") and not has_wildcard(low[:-1]):
                self.prefix[low[:-1]].add(i)
            elif has_wildcard(low):
                self.other.append((i, p))

    def candidates(self, narrow: tuple[str, ...]) -> tuple[set[int], set[int]]:
        """(denies covering any list, denies that might cover `narrow`); a superset, checked later by `covers`."""
        if not narrow:
            return self.everything, set()
        n = narrow[0]
        low = n.lower()
        found = set(self.exact.get(low, ()))
        head = literal_prefix(low)
        for k in range(1, len(head) + 1):
            found |= self.prefix.get(head[:k], set())
        if not has_wildcard(low):
            found.update(i for i, p in self.other if compile_name_glob([p])(n))
        return self.everything, found


class _DenyIndex:
    def __init__(self, denies: list[tuple[int, Rule]]) -> None:
        self.globs = {f: _GlobIndex() for f in _GLOB_FIELDS}
        self.untagged: set[int] = set()
        self.by_tag: dict[str, set[int]] = defaultdict(set)
        self.argless: set[int] = set()
        self.by_first_arg: dict[tuple[str, str], set[int]] = defaultdict(set)  # each deny under its smallest key
        for i, d in denies:
            m = d.match
            for f in _GLOB_FIELDS:
                self.globs[f].add(i, getattr(m, f))
            if m.risk_tags:
                for t in m.risk_tags:
                    self.by_tag[t].add(i)
            else:
                self.untagged.add(i)
            if m.args:
                self.by_first_arg[min(_arg_key(c) for c in m.args)].add(i)
            else:
                self.argless.add(i)

    def _dimensions(self, r: Match) -> Iterator[tuple[set[int], set[int]]]:
        for f in _GLOB_FIELDS:
            yield self.globs[f].candidates(getattr(r, f))
        tagged: set[int] = set()
        if r.risk_tags:  # a deny with tags covers only when it has every one of the rule's tags
            tagged = set.intersection(*(self.by_tag.get(t, set()) for t in r.risk_tags))
        yield self.untagged, tagged
        yield self.argless, set().union(*(self.by_first_arg.get(_arg_key(c), set()) for c in r.args))

    def candidates(self, r: Match) -> list[int]:
        """The denies that pass every dimension's superset test, in policy order."""
        dims = sorted(self._dimensions(r), key=lambda d: len(d[0]) + len(d[1]))
        (any_, some), rest = dims[0], dims[1:]
        return sorted(i for i in (any_ | some) if all(i in a or i in s for a, s in rest))


def unreachable_rules(rules: tuple[Rule, ...]) -> Iterator[tuple[Rule, Rule]]:
    """(rule, the first enforced deny that always decides instead of it), for each rule that can never decide."""
    denies = [(i, d) for i, d in enumerate(rules) if d.mode == "enforce" and d.decision == "deny"]
    if not denies:
        return
    index = _DenyIndex(denies)
    for j, r in enumerate(rules):
        if r.mode != "enforce":
            continue
        for i in index.candidates(r.match):
            if i == j or (r.decision == "deny" and i > j):
                continue
            if covers(rules[i].match, r.match):
                yield r, rules[i]
                break
