"""`cordum-sidecar install claude-code|cursor`: put every MCP server an agent launches behind the sidecar.

Claude Code: `.mcp.json` (project) or `managed-mcp.json` (--managed, fleet-wide) has
`{"mcpServers": {name: {"command", "args", "env"} | {"type": "http", "url", "headers"}}}`; each entry is
rewritten to launch `cordum-sidecar run ... --name <name> -- <original command>` (or `--url` for HTTP
entries), keeping its env. The hook goes into `.claude/settings.json` (`managed-settings.json` with
--managed) for PreToolUse (the decision) and PostToolUse/PostToolUseFailure (the call's outcome). Cursor: `.cursor/mcp.json` and `.cursor/hooks.json` (beforeShellExecution,
beforeMCPExecution, beforeReadFile). Entries already behind the sidecar are left alone, everything else in
the files is preserved (keys, names, file mode and owner), the first install keeps each file's original
bytes in `<file>.cordum-original` so `uninstall` puts them back byte for byte, files are written
atomically, and `--dry-run` prints a diff and writes nothing. Hook commands name the sidecar by absolute
path and exit 2 (which both clients treat as "block") when it is missing or crashes.
"""

from __future__ import annotations

import argparse
import base64
import copy
import difflib
import json
import os
import shlex
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from cordum.sidecar.config import SIDECAR_SERVER_NAMES, server_identity

SIDECAR = "cordum-sidecar"
# Claude Code's documented managed-settings directories (CORDUM_CLAUDE_MANAGED_DIR or --managed-dir override)
MANAGED_DIRS = {"darwin": "/Library/Application Support/ClaudeCode", "linux": "/etc/claude-code",
                "win32": "C:\\Program Files\\ClaudeCode"}
CURSOR_HOOK_EVENTS = ("beforeShellExecution", "beforeMCPExecution", "beforeReadFile")  # decide (fail closed)
CURSOR_RECORD_EVENTS = ("afterShellExecution", "afterMCPExecution", "afterFileEdit")  # record what happened
CURSOR_RECORD_TIMEOUT = 10
CURSOR_HOOK_TIMEOUT = 60  # seconds, like Claude Code's PreToolUse: room for a held approval's first poll


class InstallError(Exception):
    pass


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text() or "{}")
    except ValueError as exc:
        raise InstallError(f"{path} is not valid JSON ({exc}); fix it first, nothing was changed") from exc
    if not isinstance(data, dict):
        raise InstallError(f"{path}: expected a JSON object at the top level; nothing was changed")
    return data


def _policy_args(args: argparse.Namespace) -> list[str]:
    if getattr(args, "config", None):
        return ["--config", os.path.abspath(args.config)]
    if getattr(args, "bundle", None):
        return ["--bundle", os.path.abspath(args.bundle)]
    return ["--config", os.path.expanduser("~/.config/cordum/sidecar.yaml")]


def _is_wrapped(entry: dict[str, Any], sidecar: list[str]) -> bool:
    """True when the entry already launches the sidecar (installing twice changes nothing)."""
    command, args = entry.get("command"), [str(a) for a in entry.get("args") or []]
    if not isinstance(command, str) or "run" not in args:
        return False
    return os.path.basename(command) in (os.path.basename(sidecar[0]), SIDECAR) or "cordum.sidecar" in args


def sidecar_fronted_servers(cwd: str | None) -> set[str]:
    """Names of the MCP servers Claude Code launches through the Cordum sidecar: project `.mcp.json` (in `cwd`
    or a parent), the user's `~/.claude.json` (its own and this project's) and the managed file. The hook leaves
    their calls to the sidecar, so each is decided, held and recorded once."""
    docs: list[dict[str, Any]] = []
    here = Path(cwd or os.getcwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / ".mcp.json").is_file():
            docs.append(_read_json_quietly(directory / ".mcp.json"))
            break
    user = _read_json_quietly(Path.home() / ".claude.json")
    docs.append(user)
    docs.append(((user.get("projects") or {}).get(str(here)) or {}) if isinstance(user.get("projects"), dict) else {})
    managed = MANAGED_DIRS.get(sys.platform)
    if managed:
        docs.append(_read_json_quietly(Path(managed) / "managed-mcp.json"))
    names = set()
    for doc in docs:
        servers = doc.get("mcpServers") if isinstance(doc, dict) else None
        for name, entry in (servers or {}).items() if isinstance(servers, dict) else ():
            if isinstance(entry, dict) and _is_wrapped(entry, [SIDECAR]):
                names.add(name)
    return names


def _read_json_quietly(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_cordum_hook(command: Any) -> bool:
    text = str(command or "")
    return (SIDECAR in text or "cordum.sidecar" in text) and " hook" in text


HTTP_TYPES = ("http", "streamable-http", "streamableHttp")
# What the sidecar cannot front yet; such entries stay as they are and the hook still gates their calls.
KEEP_REASONS = {
    "headersHelper": "its headers come from a headersHelper command the sidecar does not run",
    "oauth": "it signs in with OAuth, which the client does for itself",
}


def wrap_servers(servers: dict[str, Any], *, sidecar: list[str],
                 policy_args: list[str]) -> tuple[dict, list[str], list[str]]:
    """The mcpServers mapping with every entry the sidecar can front launched behind it, every key the user
    had kept and every name unchanged; returns (new, names wrapped, notes on entries left as they were)."""
    out: dict[str, Any] = {}
    changed: list[str] = []
    notes: list[str] = []
    for name, entry in servers.items():
        if not isinstance(entry, dict) or _is_wrapped(entry, sidecar) or name in SIDECAR_SERVER_NAMES:
            out[name] = entry
            continue
        new = copy.deepcopy(entry)
        kind = entry.get("type") or entry.get("transport")
        if isinstance(entry.get("command"), str):
            upstream = [entry["command"], *[str(a) for a in entry.get("args") or []]]
            new["command"] = sidecar[0]
            # the policy judges the server by what it runs (the filesystem server named "files" is filesystem)
            identity = server_identity(upstream) or name
            new["args"] = [*sidecar[1:], "run", *policy_args, "--name", identity, "--", *upstream]
        elif isinstance(entry.get("url"), str) and (kind in HTTP_TYPES or kind == "sse"):
            kept = [k for k in KEEP_REASONS if k in entry]
            if kept:
                out[name] = entry
                notes.append(f"{name}: left as it is because {KEEP_REASONS[kept[0]]}; the hook still gates it")
                continue
            new = {k: v for k, v in entry.items() if k not in ("type", "url", "headers")}
            headers = [a for k, v in (entry.get("headers") or {}).items() for a in ("--header", f"{k}: {v}")]
            new["type"] = "stdio"
            new["command"] = sidecar[0]
            transport = ["--transport", "sse"] if kind == "sse" else []
            new["args"] = [*sidecar[1:], "run", *policy_args, "--name", name, "--url", entry["url"], *transport,
                           *headers]
        else:
            out[name] = entry
            if isinstance(entry.get("url"), str):
                notes.append(f"{name}: left as it is because the sidecar fronts only stdio, streamable HTTP and "
                             f"SSE servers ({kind or 'no type'} here); the hook still gates it")
            continue
        out[name] = new
        changed.append(name)
    return out, changed, notes


def default_sidecar_command() -> list[str]:
    """The sidecar by absolute path, so hooks and servers do not depend on the agent's PATH."""
    found = shutil.which(SIDECAR)
    return [os.path.abspath(found)] if found else [sys.executable, "-m", "cordum.sidecar"]


# If the hook cannot run (the sidecar missing, a crash), the client would go on as if it had allowed the call.
# Claude Code blocks a PreToolUse on exit code 2 and shows stderr to the model; Cursor reads the JSON answer.
_FAIL_CLOSED = {
    None: "{} || {{ echo \"Cordum: the policy hook could not run (exit $?); the call is blocked (fail closed). "
          "Check that {} works.\" >&2; exit 2; }}",
    "cursor": "{} || {{ printf '%s\\n' '{{\"permission\": \"deny\", \"user_message\": \"Cordum: the policy hook could "
              "not run; the action is blocked (fail closed).\", \"agent_message\": \"Cordum: the policy hook could not "
              "run; the action is blocked (fail closed).\"}}'; exit 0; }}",
}


def _hook_command(sidecar: list[str], policy_args: list[str], fmt: str | None = None, *,
                  fail_closed: bool = True) -> str:
    parts = [*sidecar, "hook", *policy_args]
    if fmt:
        parts += ["--agent-format", fmt]
    command = shlex.join(parts)
    return _FAIL_CLOSED[fmt].format(command, shlex.quote(sidecar[0])) if fail_closed else command


CLAUDE_HOOK_EVENTS = ("PreToolUse", "PostToolUse", "PostToolUseFailure")  # decide; then record how the call went


def add_claude_hook(settings: dict[str, Any], commands: dict[str, str], *, timeout: int = 60) -> bool:
    """Register the hook for every tool on each of CLAUDE_HOOK_EVENTS (`commands[event]`), replacing an older
    Cordum hook command in place; False when nothing changed."""
    hooks = settings.setdefault("hooks", {})
    changed = False
    for event in CLAUDE_HOOK_EVENTS:
        groups = hooks.setdefault(event, [])
        mine = [h for group in groups for h in (group or {}).get("hooks") or [] if _is_cordum_hook(h.get("command"))]
        for hook in mine:
            if hook.get("command") != commands[event]:
                hook["command"] = commands[event]
                changed = True
        if mine:
            continue
        groups.append({"matcher": "*", "hooks": [{"type": "command", "command": commands[event],
                                                  "timeout": timeout if event == "PreToolUse" else 10}]})
        changed = True
    return changed


def add_cursor_hooks(doc: dict[str, Any], decide: str, record: str) -> bool:
    doc.setdefault("version", 1)
    hooks = doc.setdefault("hooks", {})
    added = False
    for events, command, timeout in ((CURSOR_HOOK_EVENTS, decide, CURSOR_HOOK_TIMEOUT),
                                     (CURSOR_RECORD_EVENTS, record, CURSOR_RECORD_TIMEOUT)):
        for event in events:
            entries = hooks.setdefault(event, [])
            if any(_is_cordum_hook(e.get("command")) for e in entries if isinstance(e, dict)):
                continue
            entries.append({"command": command, "timeout": timeout})
            added = True
    return added


RECORD_SUFFIX = ".cordum-original"


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def _write_record(path: Path) -> None:
    """Keep what was there before the first install (bytes, mode, owner, or that nothing was), so `uninstall`
    can put it back byte for byte; a reinstall never overwrites it."""
    record = _record_path(path)
    if record.exists():
        return
    created = []  # directories the install makes, removed again by uninstall
    parent = path.parent
    while not parent.exists():
        created.append(str(parent))
        parent = parent.parent
    doc: dict[str, Any] = {"existed": path.exists(), "created_dirs": created}
    if path.exists():
        st = path.stat()
        doc.update(mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                   bytes=base64.b64encode(path.read_bytes()).decode())
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(record, json.dumps(doc, indent=2) + "\n", mode=0o600)  # may hold a secret header


def _atomic_write(path: Path, text: str | bytes, *, mode: int, owner: tuple[int, int] | None = None) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode() if isinstance(text, str) else text)
        os.chmod(tmp, mode)
        if owner is not None:
            try:
                os.chown(tmp, *owner)
            except PermissionError:  # only root may give a file away; the mode is still kept
                pass
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class Plan:
    """File changes to make (or print)."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, dict[str, Any] | None, dict[str, Any]]] = []
        self.notes: list[str] = []

    def add(self, path: Path, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        if old != new:
            self.files.append((path, old, new))

    def diff(self) -> str:
        chunks = []
        for path, old, new in self.files:
            a = json.dumps(old, indent=2).splitlines(keepends=True) if old is not None else []
            b = json.dumps(new, indent=2).splitlines(keepends=True)
            chunks.append("".join(difflib.unified_diff(a, b, f"{path} (current)", f"{path} (with Cordum)")))
        return "\n".join(chunks)

    def apply(self) -> list[Path]:
        """Write each file in place of the old one, keeping its mode and owner; return the records written."""
        records = []
        for path, _old, new in self.files:
            _write_record(path)
            records.append(_record_path(path))
            if path.exists():
                st = path.stat()
                mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
            else:
                mode, owner = _default_mode(), None
            _atomic_write(path, json.dumps(new, indent=2) + "\n", mode=mode, owner=owner)
        return records


def target_paths(args: argparse.Namespace) -> list[Path]:
    """The files `install` writes for these arguments (and `uninstall` restores)."""
    if args.target == "claude-code":
        if args.managed:
            base = managed_dir(args)
            return [base / "managed-mcp.json", base / "managed-settings.json"]
        project = Path(args.project or ".")
        return [project / ".mcp.json", project / ".claude" / "settings.json"]
    base = Path(args.managed_dir or os.path.expanduser("~/.cursor")) if args.managed else \
        Path(args.project or ".") / ".cursor"
    return [base / "mcp.json", base / "hooks.json"]


def managed_dir(args: argparse.Namespace) -> Path:
    return Path(args.managed_dir or os.environ.get("CORDUM_CLAUDE_MANAGED_DIR")
                or MANAGED_DIRS.get(sys.platform, "/etc/claude-code"))


def plan_install(args: argparse.Namespace) -> Plan:
    sidecar = shlex.split(args.sidecar_command) if getattr(args, "sidecar_command", None) else default_sidecar_command()
    policy_args = _policy_args(args)
    plan = Plan()
    if args.target == "claude-code":
        if args.managed:
            mcp_path, settings_path = target_paths(args)
            source = _read_json(mcp_path)
            if source is None:  # start from the project's servers
                source = _read_json(Path(args.project or ".") / ".mcp.json") or {}
                old_mcp = None
            else:
                old_mcp = source
        else:
            mcp_path, settings_path = target_paths(args)
            old_mcp = source = _read_json(mcp_path)
            source = source or {}
        new_mcp = copy.deepcopy(source)
        servers, _, plan.notes = wrap_servers(source.get("mcpServers") or {}, sidecar=sidecar,
                                              policy_args=policy_args)
        new_mcp["mcpServers"] = servers
        plan.add(mcp_path, old_mcp, new_mcp)
        if not args.no_hook:
            old_settings = _read_json(settings_path)
            settings = copy.deepcopy(old_settings or {})
            decide = _hook_command(sidecar, policy_args)
            record = _hook_command(sidecar, policy_args, fail_closed=False)  # the call already ran: nothing to block
            add_claude_hook(settings, {"PreToolUse": decide, "PostToolUse": record, "PostToolUseFailure": record})
            plan.add(settings_path, old_settings, settings)
    else:  # cursor
        mcp_path, hooks_path = target_paths(args)
        old_mcp = _read_json(mcp_path)
        new_mcp = copy.deepcopy(old_mcp or {})
        servers, _, plan.notes = wrap_servers((old_mcp or {}).get("mcpServers") or {}, sidecar=sidecar,
                                              policy_args=policy_args)
        new_mcp["mcpServers"] = servers
        plan.add(mcp_path, old_mcp, new_mcp)
        if not args.no_hook:
            old_hooks = _read_json(hooks_path)
            doc = copy.deepcopy(old_hooks or {})
            add_cursor_hooks(doc, _hook_command(sidecar, policy_args, "cursor"),
                             _hook_command(sidecar, policy_args, "cursor", fail_closed=False))  # after: nothing to block
            plan.add(hooks_path, old_hooks, doc)
    return plan


def install(args: argparse.Namespace) -> int:
    try:
        plan = plan_install(args)
    except InstallError as exc:
        print(f"cordum-sidecar install: {exc}", file=sys.stderr)
        return 1
    for note in plan.notes:
        print(f"note: {note}")
    if not plan.files:
        print("Nothing to change: every MCP server and the hook are already behind Cordum.")
        return 0
    if args.dry_run:
        print(plan.diff())
        print(f"(dry run: {len(plan.files)} file(s) would change; nothing was written)")
        return 0
    records = plan.apply()
    for path, _, _ in plan.files:
        print(f"updated {path}")
    for r in records:
        print(f"original kept in {r} (`cordum-sidecar uninstall` puts it back)")
    return 0


def uninstall(args: argparse.Namespace) -> int:
    """Put back every file `install` changed, byte for byte with its mode and owner; remove what it created."""
    restored = 0
    created: list[str] = []
    for path in target_paths(args):
        record = _record_path(path)
        if not record.exists():
            continue
        try:
            doc = json.loads(record.read_text())
        except ValueError:
            print(f"cordum-sidecar uninstall: {record} is damaged; {path} left as it is", file=sys.stderr)
            return 1
        if doc.get("existed"):
            _atomic_write(path, base64.b64decode(doc["bytes"]), mode=doc["mode"], owner=(doc["uid"], doc["gid"]))
        elif path.exists():
            path.unlink()
        record.unlink()
        created += doc.get("created_dirs") or []
        print(f"restored {path}")
        restored += 1
    for directory in sorted(created, key=len, reverse=True):  # deepest first
        try:
            os.rmdir(directory)
        except OSError:  # not empty: something else lives there now
            pass
    if not restored:
        print("Nothing to restore: no Cordum install record next to these files.")
    return 0
