"""Semantic diff between two policies: what changed, and which decisions move for given calls."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .engine import Call, compile_policy
from .model import Policy
from .positions import Positions

__all__ = ["PolicyDiff", "diff_policies", "locate_diff"]


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d and prefix.count(".") < 3 and not prefix.endswith("args"):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _field_changes(old: dict, new: dict) -> list[dict[str, Any]]:
    a, b = _flatten(old), _flatten(new)
    changes = []
    for key in list(a) + [k for k in b if k not in a]:
        if a.get(key, None) != b.get(key, None):
            changes.append({"field": key, "before": a.get(key), "after": b.get(key)})
    return changes


@dataclass(frozen=True)
class PolicyDiff:
    rules_added: list[dict] = field(default_factory=list)
    rules_removed: list[dict] = field(default_factory=list)
    rules_changed: list[dict] = field(default_factory=list)  # {"id", "changes": [{"field","before","after"}]}
    rules_reordered: bool = False
    rules_moved: list[str] = field(default_factory=list)  # ids whose place among the kept rules changed
    defaults: list[dict] = field(default_factory=list)
    limits: list[dict] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)
    tools_added: list[dict] = field(default_factory=list)
    tools_removed: list[dict] = field(default_factory=list)
    tools_reordered: bool = False
    labels_added: list[dict] = field(default_factory=list)  # `labels` entries (session data-flow)
    labels_removed: list[dict] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)  # calls whose decision or deciding rule moves
    calls_checked: int = 0
    on_tool_drift: list[dict] = field(default_factory=list)
    pins: list[dict] = field(default_factory=list)  # tools.lock: {"server", "tool", "change", "what"}

    @property
    def empty(self) -> bool:
        return not (
            self.rules_added or self.rules_removed or self.rules_changed or self.rules_reordered or self.defaults
            or self.limits or self.evidence or self.tools_added or self.tools_removed or self.tools_reordered
            or self.labels_added or self.labels_removed or self.decisions or self.on_tool_drift or self.pins
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": {
                "added": self.rules_added,
                "removed": self.rules_removed,
                "changed": self.rules_changed,
                "reordered": self.rules_reordered,
                "moved": self.rules_moved,
            },
            "defaults": self.defaults,
            "limits": self.limits,
            "evidence": self.evidence,
            "tools": {"added": self.tools_added, "removed": self.tools_removed, "reordered": self.tools_reordered},
            "labels": {"added": self.labels_added, "removed": self.labels_removed},
            "decisions": {"checked": self.calls_checked, "moved": self.decisions},
            "pinning": {"on_tool_drift": self.on_tool_drift, "tools": self.pins},
        }

    def _label_lines(self) -> list[str]:
        out = []
        for sign, entries in (("+", self.labels_added), ("-", self.labels_removed)):
            for e in entries:
                m = e["match"]
                out.append(f"{sign} label {e['label']} set by {', '.join(m['topics']) or '*'}"
                           + (f" [{', '.join(m['risk_tags'])}]" if m["risk_tags"] else ""))
        return out

    def _pinning_lines(self) -> list[str]:
        lines = [f"~ on_tool_drift: {c['before']!r} -> {c['after']!r}" for c in self.on_tool_drift]
        for p in self.pins:
            mark = {"pinned": "+", "unpinned": "-"}.get(p["change"], "~")
            what = f": {' and '.join(p['what'])} changed" if p["what"] else ""
            lines.append(f"{mark} tools.lock {p['server']}/{p['tool']}{what}")
        return lines

    def to_text(self) -> str:
        lines: list[str] = []
        for r in self.rules_added:
            lines.append(f"+ rule {r['id']}: {r['decision']} {', '.join(r['match']['topics']) or '*'}")
        for r in self.rules_removed:
            lines.append(f"- rule {r['id']}: {r['decision']} {', '.join(r['match']['topics']) or '*'}")
        for r in self.rules_changed:
            lines.append(f"~ rule {r['id']}:")
            for c in r["changes"]:
                lines.append(f"    {c['field']}: {c['before']!r} -> {c['after']!r}")
        if self.rules_reordered:
            moved = f": {', '.join(self.rules_moved)} moved" if self.rules_moved else ""
            lines.append(f"~ rule order changed{moved} (order only breaks ties between equally strict rules)")
        for label, changes in (("defaults", self.defaults), ("limits", self.limits), ("evidence", self.evidence)):
            for c in changes:
                lines.append(f"~ {label}.{c['field']}: {c['before']!r} -> {c['after']!r}")
        for t in self.tools_added:
            lines.append(f"+ tool map {'/'.join(t['server'])} {'/'.join(t['tool'])} -> {t['topic']}")
        for t in self.tools_removed:
            lines.append(f"- tool map {'/'.join(t['server'])} {'/'.join(t['tool'])} -> {t['topic']}")
        if self.tools_reordered:
            lines.append("~ tool map order changed (the first matching entry maps a call)")
        lines.extend(self._label_lines())
        lines.extend(self._pinning_lines())
        if not lines:
            lines.append("no policy changes")
        if self.calls_checked:
            lines.append(f"decisions: {len(self.decisions)} of {self.calls_checked} calls move")
            for d in self.decisions:
                c = d["call"]
                what = c.get("topic") or f"{c.get('server')}.{c.get('tool')}"
                b, a = d["before"], d["after"]
                lines.append(
                    f"  {what} {d.get('label') or ''}".rstrip()
                    + f": {b['decision']} ({b['rule'] or 'default'}) -> {a['decision']} ({a['rule'] or 'default'})"
                )
        return "\n".join(lines) + "\n"


def _pin_changes(old: Policy, new: Policy) -> list[dict]:
    """Tools pinned, unpinned or re-pinned (with what changed) between two tools.lock files."""
    from .toollock import compare_listing

    old_servers = dict(old.tools_lock.servers) if old.tools_lock else {}
    new_servers = dict(new.tools_lock.servers) if new.tools_lock else {}
    changes = []
    for server in list(old_servers) + [s for s in new_servers if s not in old_servers]:
        pinned = {t.name: t for t in old_servers.get(server, ())}
        for d in compare_listing(server, pinned, list(new_servers.get(server, ())), complete=True):
            change = {"new": "pinned", "removed": "unpinned"}.get(d.kind, "repinned")
            changes.append({"server": server, "tool": d.tool, "change": change, "what": d.parts()})
    return changes


def diff_policies(old: Policy, new: Policy, calls: Iterable[Call] | None = None) -> PolicyDiff:
    od, nd = old.to_dict(), new.to_dict()
    old_rules = {r["id"]: r for r in od["rules"]}
    new_rules = {r["id"]: r for r in nd["rules"]}
    added = [r for rid, r in new_rules.items() if rid not in old_rules]
    removed = [r for rid, r in old_rules.items() if rid not in new_rules]
    changed = []
    for rid, r in new_rules.items():
        if rid in old_rules and old_rules[rid] != r:
            changed.append({"id": rid, "changes": _field_changes(old_rules[rid], r)})
    common_old = [rid for rid in old_rules if rid in new_rules]
    common_new = [rid for rid in new_rules if rid in old_rules]
    old_tools, new_tools = od["tools"], nd["tools"]
    tools_added = [t for t in new_tools if t not in old_tools]
    tools_removed = [t for t in old_tools if t not in new_tools]
    common_t_old = [t for t in old_tools if t in new_tools]
    common_t_new = [t for t in new_tools if t in old_tools]
    old_labels, new_labels = od.get("labels", []), nd.get("labels", [])
    moved: list[dict] = []
    checked = 0
    if calls is not None:
        co, cn = compile_policy(old, "old"), compile_policy(new, "new")
        for item in calls:
            label = None
            if isinstance(item, tuple):
                label, item = item
            call = item if isinstance(item, Call) else Call.from_dict(item)
            checked += 1
            a, b = co.evaluate(call), cn.evaluate(call)
            if (a.decision, a.rule) != (b.decision, b.rule):
                entry = {
                    "call": call.to_dict(),
                    "topic": b.topic,
                    "before": {"decision": a.decision, "rule": a.rule},
                    "after": {"decision": b.decision, "rule": b.rule},
                }
                if label:
                    entry["label"] = label
                moved.append(entry)
    return PolicyDiff(
        rules_added=added,
        rules_removed=removed,
        rules_changed=changed,
        rules_reordered=common_old != common_new,
        rules_moved=_moved(common_old, common_new),
        defaults=_field_changes(od["defaults"], nd["defaults"]),
        limits=_field_changes(od["limits"], nd["limits"]),
        evidence=_field_changes(od["evidence"], nd["evidence"]),
        tools_added=tools_added,
        tools_removed=tools_removed,
        tools_reordered=common_t_old != common_t_new,
        labels_added=[e for e in new_labels if e not in old_labels],
        labels_removed=[e for e in old_labels if e not in new_labels],
        decisions=moved,
        calls_checked=checked,
        on_tool_drift=_field_changes({"on_tool_drift": old.on_tool_drift}, {"on_tool_drift": new.on_tool_drift}),
        pins=_pin_changes(old, new),
    )


def _moved(old_order: list[str], new_order: list[str]) -> list[str]:
    """The ids outside the longest common subsequence of two orders of the same ids: the ones that moved."""
    if old_order == new_order:
        return []
    kept: set[str] = set()
    matcher = difflib.SequenceMatcher(a=old_order, b=new_order, autojunk=False)
    for block in matcher.get_matching_blocks():
        kept.update(new_order[block.b : block.b + block.size])
    return [rid for rid in new_order if rid not in kept]


def _at(side: str, line: int | None, filename: str) -> dict | None:
    return {"side": side, "file": filename, "line": line} if line else None


def _index_of(rules: list[dict], rule_id: str) -> int | None:
    return next((i for i, r in enumerate(rules) if r["id"] == rule_id), None)


def _field_path(field_name: str) -> list[str]:
    return [part for part in field_name.split(".") if part]


def _locate_rules(out: dict, od: dict, nd: dict, old: Positions, new: Positions, filename: str) -> None:
    rules = out["rules"]
    for r in rules["added"]:
        r["at"] = _at("new", new.line(["rules", _index_of(nd["rules"], r["id"])]), filename)
    for r in rules["removed"]:
        r["at"] = _at("old", old.line(["rules", _index_of(od["rules"], r["id"])]), filename)
    for r in rules["changed"]:
        index = _index_of(nd["rules"], r["id"])
        r["at"] = _at("new", new.line(["rules", index]), filename)
        for change in r["changes"]:
            side, where, i = ("old", old, _index_of(od["rules"], r["id"])) if change["after"] is None else (
                "new", new, index)
            change["at"] = _at(side, where.line(["rules", i, *_field_path(change["field"])]), filename)
    rules["moved_at"] = [
        {"id": rid, "at": _at("new", new.line(["rules", _index_of(nd["rules"], rid)]), filename)}
        for rid in rules.get("moved", [])
    ]


def locate_diff(diff: dict, *, old_policy: dict, new_policy: dict, old_text: str, new_text: str,
                filename: str = "safety.yaml") -> dict:
    """`PolicyDiff.to_dict()` with an `at` ({"side": "old"|"new", "file", "line"}) on every entry: where the
    rule, tool-map entry or setting is in the new text (or, once removed, in the old one).

    `old_policy`/`new_policy` are the canonical dicts the diff was computed from (their rule and tool order is
    the order in the text), `old_text`/`new_text` the policy files they were loaded from."""
    import copy

    out = copy.deepcopy(diff)
    old, new = Positions(old_text), Positions(new_text)
    _locate_rules(out, old_policy, new_policy, old, new, filename)
    tools = out["tools"]
    for t in tools["added"]:
        tools_index = next((i for i, x in enumerate(new_policy["tools"]) if x == {k: v for k, v in t.items()
                                                                                   if k != "at"}), None)
        t["at"] = _at("new", new.line(["tools", tools_index]), filename)
    for t in tools["removed"]:
        tools_index = next((i for i, x in enumerate(old_policy["tools"]) if x == {k: v for k, v in t.items()
                                                                                   if k != "at"}), None)
        t["at"] = _at("old", old.line(["tools", tools_index]), filename)
    if tools["reordered"]:
        tools["reordered_at"] = _at("new", new.line(["tools"]), filename)
    for section in ("defaults", "limits", "evidence"):
        for change in out[section]:
            side, where = ("old", old) if change["after"] is None else ("new", new)
            change["at"] = _at(side, where.line([section, *_field_path(change["field"])]), filename)
    return out
