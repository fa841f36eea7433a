"""Tool pinning: `tools.lock` pins, per upstream server, each MCP tool's name, description and input schema.

The file sits next to safety.yaml in the policy repository and is written by `cordum policy lock`. It keeps the
full text of each pinned description and schema (so a drift can be shown as a diff and reviewed like code) and
one digest per tool over all three, which is what the sidecar compares: once per `tools/list` answer, never per
call. The digest is `sha256:` + sha256 of the canonical JSON of `{"name", "description", "inputSchema"}`
(a missing description is "", a missing schema {}); lint refuses a lock whose text and digest disagree.

```yaml
version: 1
servers:
  docs:                       # the upstream's server name, as the sidecar names it
    - name: search
      digest: sha256:3f…
      description: |-
        Search the documentation.
      input_schema: {type: object, properties: {q: {type: string}}}
```

A tool the server lists that the lock does not name is `new`, one whose digest differs is `changed`, one the lock
names that a complete listing lacks is `removed`. Servers the lock does not name are not pinned.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .evidence import canonical_json
from .model import DECISION_RANK, LockedTool, ToolsLock

__all__ = [
    "LOCK_FILENAME",
    "DriftKind",
    "ToolDrift",
    "DRIFT_RULE",
    "ToolPins",
    "apply_drift",
    "compare_listing",
    "drift_diff",
    "listed_tool",
    "lock_from_listings",
    "lock_update",
    "render_lock",
    "tool_digest",
    "validate_lock",
]

LOCK_FILENAME = "tools.lock"
LOCK_VERSION = 1
_DIGEST_PREFIX = "sha256:"
_HEADER = (
    "# tools.lock: the MCP tools this policy repository pins (name, description, input schema, digest).\n"
    "# Written by `cordum policy lock`; the sidecar applies `on_tool_drift` (safety.yaml) to any tool that differs.\n"
    "# Review a change to this file like a change to safety.yaml.\n"
)


class DriftKind:
    NEW = "new"
    CHANGED = "changed"
    REMOVED = "removed"


def tool_digest(name: str, description: str | None, input_schema: Any) -> str:
    body = {"name": name, "description": description or "", "inputSchema": input_schema or {}}
    try:
        data = canonical_json(body)
    except TypeError:  # an integer past 64 bits: digested as the float JSON parsers (orjson) read it as
        data = canonical_json(_big_ints_as_floats(body))
    return _DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def _big_ints_as_floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _big_ints_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_big_ints_as_floats(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float(value)
    return value


def listed_tool(tool: dict[str, Any]) -> LockedTool | None:
    """A tool as a server's `tools/list` gives it, digested once; None for an entry without a string name."""
    name = tool.get("name") if isinstance(tool, dict) else None
    if not isinstance(name, str):
        return None
    description = tool.get("description")
    description = description if isinstance(description, str) else ""
    schema = tool.get("inputSchema") or {}
    return LockedTool(name=name, digest=tool_digest(name, description, schema), description=description,
                      input_schema=schema)


@dataclass(frozen=True)
class ToolDrift:
    """A difference between what a server lists and what the lock pins for it."""

    server: str
    tool: str
    kind: str  # DriftKind
    locked: LockedTool | None = None
    seen: LockedTool | None = None

    def parts(self) -> list[str]:
        """What changed of a changed tool: "description", "input schema"."""
        if self.kind != DriftKind.CHANGED or self.locked is None or self.seen is None:
            return []
        out = []
        if self.locked.description != self.seen.description:
            out.append("description")
        if (self.locked.input_schema or {}) != (self.seen.input_schema or {}):
            out.append("input schema")
        return out

    def describe(self) -> str:
        where = f"tool '{self.tool}' of server '{self.server}'"
        if self.kind == DriftKind.NEW:
            return f"{where} is not pinned in tools.lock (a new tool, {_short(self.seen)})"
        if self.kind == DriftKind.REMOVED:
            return f"{where} is pinned in tools.lock but the server no longer lists it"
        what = " and ".join(self.parts()) or "definition"
        return (f"{where} differs from tools.lock: its {what} changed "
                f"(pinned {_short(self.locked)}, listed {_short(self.seen)})")

    def diff_text(self) -> str:
        """The description and schema diffs as one unified diff (what a reviewer is shown when a call is held)."""
        parts = drift_diff(self.tool, _side(self.locked), _side(self.seen))
        return "\n".join([*parts["description"], *parts["input_schema"]])

    def fact(self) -> dict[str, Any]:
        """The evidence fact: kind and digests, never the text."""
        out: dict[str, Any] = {"kind": self.kind}
        if self.locked is not None:
            out["locked"] = self.locked.digest
        if self.seen is not None:
            out["seen"] = self.seen.digest
        return out


def drift_diff(tool: str, locked: dict[str, Any] | None, seen: dict[str, Any] | None) -> dict[str, list[str]]:
    """Unified diffs, pinned -> listed, of a tool's description and of its input schema (sorted, indented JSON).
    `locked`/`seen`: {"description", "input_schema"} or None (a new or removed tool)."""

    def lines(side: dict[str, Any] | None, key: str) -> list[str]:
        if side is None:
            return []
        value = side.get(key)
        if key == "description":
            return (value or "").splitlines()
        return json.dumps(value or {}, indent=2, sort_keys=True, ensure_ascii=False).splitlines()

    return {key: list(difflib.unified_diff(lines(locked, key), lines(seen, key), lineterm="", n=3,
                                           fromfile=f"tools.lock: {tool} ({label})", tofile=f"listed: {tool} ({label})"))
            for key, label in (("description", "description"), ("input_schema", "input schema"))}


def _side(tool: LockedTool | None) -> dict[str, Any] | None:
    return None if tool is None else {"description": tool.description, "input_schema": tool.input_schema}


def _short(tool: LockedTool | None) -> str:
    return "digest " + (tool.digest[: len(_DIGEST_PREFIX) + 12] + "…" if tool is not None else "none")


def compare_listing(server: str, locked: dict[str, LockedTool], listed: list[LockedTool], *,
                    complete: bool) -> list[ToolDrift]:
    """The drifts of one server's listing against its pinned tools. `complete`: the listing is the whole list
    (not one page of a paginated answer), so a pinned tool missing from it was removed."""
    drifts = []
    names = set()
    for tool in listed:
        names.add(tool.name)
        pinned = locked.get(tool.name)
        if pinned is None:
            drifts.append(ToolDrift(server, tool.name, DriftKind.NEW, None, tool))
        elif pinned.digest != tool.digest:
            drifts.append(ToolDrift(server, tool.name, DriftKind.CHANGED, pinned, tool))
    if complete:
        drifts.extend(ToolDrift(server, name, DriftKind.REMOVED, pinned, None)
                      for name, pinned in locked.items() if name not in names)
    return drifts


DRIFT_RULE = "on_tool_drift"  # the rule id a drift decision names (the setting that made it)


def apply_drift(drift: ToolDrift, *, on_tool_drift: str, decision: str, rule: str | None, reason: str,
                approval: dict[str, Any], default_approval: dict[str, Any]):
    """(decision, rule, reason, approval) for a call to a drifted tool: the stricter of what `on_tool_drift` says
    and the policy's own decision stands (allow: the policy's decision, the drift only recorded)."""
    if on_tool_drift == "allow" or DECISION_RANK[on_tool_drift] <= DECISION_RANK[decision]:
        return decision, rule, reason, approval
    if on_tool_drift == "require_approval":
        approval = dict(default_approval)
    return on_tool_drift, DRIFT_RULE, f"{drift.describe()}; on_tool_drift: {on_tool_drift}", approval


class ToolPins:
    """What each upstream listed, compared with the lock in force."""

    def __init__(self) -> None:
        self._lock: ToolsLock | None = None
        self._pinned: dict[str, dict[str, LockedTool]] = {}  # server -> pinned tools (servers the lock names)
        self._seen: dict[str, dict[str, LockedTool]] = {}  # server -> tools as last listed
        self._complete: dict[str, bool] = {}  # server -> the last listing was the whole list
        self._drift: dict[tuple[str, str], ToolDrift] = {}
        self._reported: set[tuple] = set()
        self.generation = 0  # counts the locks put in force (what an agent was shown may be out of date)

    @property
    def active(self) -> bool:
        return bool(self._pinned)

    def set_lock(self, lock: ToolsLock | None) -> list[ToolDrift]:
        """Put a (new) lock in force; returns the drifts not reported before, found in what was already listed."""
        if lock == self._lock:  # a tool's digest covers its schema, so equal locks pin the same tools
            return []
        self._lock = lock
        self.generation += 1
        self._pinned = {name: {t.name: t for t in tools} for name, tools in (lock.servers if lock else ())}
        self._drift = {}
        fresh: list[ToolDrift] = []
        for server, tools in self._seen.items():
            fresh.extend(self._compare(server, list(tools.values()), complete=self._complete.get(server, False)))
        return fresh

    def observe(self, server: str, tools: list[Any], *, complete: bool) -> list[ToolDrift]:
        """Record one listing (a page, unless `complete`); returns the drifts not reported before."""
        listed = [t for t in (listed_tool(x) for x in tools) if t is not None]
        if complete:
            self._seen[server] = {t.name: t for t in listed}
        else:
            self._seen.setdefault(server, {}).update((t.name, t) for t in listed)
        self._complete[server] = complete
        if server not in self._pinned:
            return []
        if complete:
            for key in [k for k in self._drift if k[0] == server]:
                del self._drift[key]
        return self._compare(server, listed, complete=complete)

    def _compare(self, server: str, listed: list[LockedTool], *, complete: bool) -> list[ToolDrift]:
        pinned = self._pinned.get(server)
        if pinned is None:
            return []
        fresh = []
        for drift in compare_listing(server, pinned, listed, complete=complete):
            self._drift[(server, drift.tool)] = drift
            key = (server, drift.tool, drift.kind, drift.locked.digest if drift.locked else None,
                   drift.seen.digest if drift.seen else None)
            if key not in self._reported:
                self._reported.add(key)
                fresh.append(drift)
        return fresh

    def listing_digest(self, server: str) -> str:
        """One digest over what `server` last listed (tells a new listing from a repeated one)."""
        tools = self._seen.get(server) or {}
        return hashlib.sha256("\n".join(sorted(t.digest for t in tools.values())).encode()).hexdigest()

    def drift(self, server: str, tool: str) -> ToolDrift | None:
        """The drift of a called tool, or None. A tool of a pinned server that the lock does not name is new even
        if the server never listed it (the agent cannot bypass pinning by calling a name it guessed)."""
        pinned = self._pinned.get(server)
        if pinned is None:
            return None
        found = self._drift.get((server, tool))
        if found is not None:
            return found
        if tool not in pinned:
            return ToolDrift(server, tool, DriftKind.NEW, None, self._seen.get(server, {}).get(tool))
        return None

    def hidden(self, server: str, tools: list[Any]) -> list[Any] | None:
        """`tools` without the new and changed ones (on_tool_drift: deny), or None when nothing is taken out."""
        if server not in self._pinned:
            return None
        keep = [t for t in tools if not (isinstance(t, dict) and self.drift(server, str(t.get("name"))) is not None)]
        return keep if len(keep) != len(tools) else None


# -- writing -------------------------------------------------------------------------------------------
def lock_from_listings(listings: dict[str, list[dict[str, Any]]]) -> ToolsLock:
    """A lock pinning every tool of each server's `tools/list` (server order kept, tools sorted by name)."""
    servers = []
    for server, tools in listings.items():
        pinned = sorted((t for t in (listed_tool(x) for x in tools) if t is not None), key=lambda t: t.name)
        servers.append((server, tuple(pinned)))
    return ToolsLock(servers=tuple(servers))


def lock_update(lock: ToolsLock | None, drifts: list[ToolDrift]) -> ToolsLock:
    """`lock` with each drift accepted: new and changed tools pinned as listed, removed tools unpinned."""
    servers = {name: {t.name: t for t in tools} for name, tools in (lock.servers if lock else ())}
    for drift in drifts:
        tools = servers.setdefault(drift.server, {})
        if drift.kind == DriftKind.REMOVED:
            tools.pop(drift.tool, None)
        elif drift.seen is not None:
            tools[drift.tool] = drift.seen
    return ToolsLock(servers=tuple((name, tuple(sorted(tools.values(), key=lambda t: t.name)))
                                   for name, tools in servers.items()))


class _LockDumper(yaml.SafeDumper):
    pass


_ODD_BREAKS = ("\r", "\x85", "\u2028", "\u2029")  # line breaks YAML folds or normalises unless escaped


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line descriptions as literal blocks, so a drift reads as a plain line diff in review. The emitter
    # falls back to a quoted style by itself where a block cannot hold the exact text; text with line breaks
    # other than \n is double-quoted, where every such break is escaped and reads back exactly.
    style = '"' if any(b in value for b in _ODD_BREAKS) else ("|" if "\n" in value else None)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LockDumper.add_representer(str, _str_representer)


def render_lock(lock: ToolsLock) -> str:
    """The text of tools.lock: deterministic (same lock, same bytes), and read back to the same digests."""
    body = yaml.dump(lock.to_dict(), Dumper=_LockDumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=False)
    return _HEADER + body


# -- reading (used by the loader, with its validator: issues carry file:line:col) ----------------------
def validate_lock(v: Any, node: Node, where: str = "tools.lock") -> ToolsLock | None:
    """Validate a lock document (`v` is the loader's validator, whose file name the issues carry)."""
    m = v.mapping(node, where, ("version", "servers"), ("version", "servers"))
    if m is None or "version" not in m or "servers" not in m:
        return None
    vnode = m["version"][1]
    if not (isinstance(vnode, ScalarNode) and v.value(vnode) == LOCK_VERSION and vnode.tag.endswith(":int")):
        v.error(vnode, f"unsupported {where} version: this Cordum writes and reads version: {LOCK_VERSION}")
        return None
    snode = m["servers"][1]
    if isinstance(snode, ScalarNode) and snode.tag.endswith(":null"):
        return ToolsLock()
    if not isinstance(snode, MappingNode):
        v.error(snode, f"'{where}.servers' must be a mapping of server name to a list of tools")
        return None
    servers = []
    ok = True
    seen: set[str] = set()
    for knode, tnode in snode.value:
        server = v.value(knode) if isinstance(knode, ScalarNode) else None
        if not isinstance(server, str) or not server:
            v.error(knode, f"server names in {where} must be non-empty strings")
            ok = False
            continue
        if server in seen:
            v.error(knode, f"duplicate server '{server}' in {where}")
            ok = False
            continue
        seen.add(server)
        tools = _server_tools(v, tnode, server, where)
        if tools is None:
            ok = False
        else:
            servers.append((server, tools))
    return ToolsLock(servers=tuple(servers)) if ok else None


def _server_tools(v: Any, node: Node, server: str, where: str) -> tuple[LockedTool, ...] | None:
    if isinstance(node, ScalarNode) and node.tag.endswith(":null"):
        return ()
    if not isinstance(node, SequenceNode):
        v.error(node, f"'{where}.servers.{server}' must be a list of tools")
        return None
    out: list[LockedTool] = []
    names: dict[str, int] = {}
    ok = True
    for i, item in enumerate(node.value):
        tool = _locked_tool(v, item, f"{where}.servers.{server}[{i}]")
        if tool is None:
            ok = False
            continue
        if tool.name in names:
            v.error(item, f"tool '{tool.name}' is pinned twice for server '{server}' (first at line {names[tool.name]})")
            ok = False
            continue
        names[tool.name] = item.start_mark.line + 1
        out.append(tool)
    return tuple(out) if ok else None


def _locked_tool(v: Any, node: Node, where: str) -> LockedTool | None:
    m = v.mapping(node, where, ("name", "digest", "description", "input_schema"), ("name", "digest"))
    if m is None or "name" not in m or "digest" not in m:
        return None
    name = v.string(m["name"][1], "name")
    digest = v.string(m["digest"][1], "digest")
    description = v.string(m["description"][1], "description", allow_empty=True) if "description" in m else ""
    schema: Any = {}
    if "input_schema" in m:
        snode = m["input_schema"][1]
        if not isinstance(snode, MappingNode):
            v.error(snode, f"'input_schema' in {where} must be a mapping (the tool's JSON Schema)")
            return None
        schema = v.value(snode)
    if name is None or digest is None or description is None:
        return None
    expected = tool_digest(name, description, schema)
    if digest != expected:
        v.error(m["digest"][1], f"digest of tool '{name}' does not match its description and input schema "
                                f"(expected {expected}); re-run `cordum policy lock` instead of editing by hand")
        return None
    return LockedTool(name=name, digest=digest, description=description, input_schema=schema)
