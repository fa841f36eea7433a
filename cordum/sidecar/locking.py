"""`cordum policy lock`: list the tools of live MCP servers with the MCP SDK client and write tools.lock.

Where the servers come from, by the same names the sidecar gives them (the lock is keyed by them):
- `--config sidecar.yaml`: its `upstreams:` (stdio commands and streamable-HTTP URLs);
- `--mcp-json .mcp.json`: its `mcpServers`; an entry that launches the sidecar (`cordum-sidecar run ... --name N
  -- CMD` or `--url URL`) is unwrapped to the server behind it, named N;
- `-- COMMAND ARGS` (with `--name`, default guessed like `cordum-sidecar run` does);
- `--url URL` (with `--name` and `--header K:V`): a streamable-HTTP server;
- `--from-sidecar sidecar.yaml|spool.db`: what a running (or stopped) sidecar last saw each upstream list, kept in
  its spool before any tool was hidden, so nothing is started and the lock pins what the agent's servers offer.

Not through a sidecar's MCP interface: under `on_tool_drift: deny` it hides the very tools that drifted, so a lock
written from its tools/list would unpin them (`--from-sidecar` reads the unfiltered listings instead).

Servers that are not listed this time keep their entries in an existing lock. `--check` writes nothing and exits 1
when the live tools differ from the lock (a CI or cron check for rug pulls before any agent meets them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from cordum.policy.loader import load_lock_text
from cordum.policy.model import ToolsLock
from cordum.policy.toollock import LOCK_FILENAME, compare_listing, listed_tool, lock_update, render_lock
from cordum.sidecar.config import UpstreamConfig, guess_server_name, load_config

MAX_PAGES = 100


class LockError(Exception):
    """The servers could not be listed (bad source, server failed to start, protocol error); the message says which."""


def upstreams_from_mcp_json(path: str | os.PathLike[str]) -> list[UpstreamConfig]:
    """The servers of a `.mcp.json` (Claude Code / Cursor shape), unwrapping entries that launch the sidecar."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise LockError(f"cannot read {path}: {exc}") from exc
    servers = doc.get("mcpServers") if isinstance(doc, dict) else None
    if not isinstance(servers, dict):
        raise LockError(f"{path}: no mcpServers mapping")
    out = []
    for name, entry in servers.items():
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("command"), str):
            upstream = _unwrap([entry["command"], *[str(a) for a in entry.get("args") or []]], name)
            if upstream is not None:  # started where the agent starts it: the project holding .mcp.json
                out.append(upstream if upstream.url else UpstreamConfig(
                    name=upstream.name, command=upstream.command, cwd=str(Path(path).resolve().parent),
                    env={str(k): str(v) for k, v in (entry.get("env") or {}).items()}))
        elif isinstance(entry.get("url"), str):
            out.append(UpstreamConfig(name=name, url=entry["url"],
                                      headers={str(k): str(v) for k, v in (entry.get("headers") or {}).items()}))
    return out


def _unwrap(command: list[str], name: str) -> UpstreamConfig | None:
    """The server a command runs: itself, or, when it launches `cordum-sidecar run`, the upstream after `--`
    (or its --url) under the sidecar's --name."""
    is_sidecar = "run" in command and (os.path.basename(command[0]) == "cordum-sidecar" or "cordum.sidecar" in command)
    if not is_sidecar:
        return UpstreamConfig(name=name, command=command)
    given = command[command.index("--name") + 1] if "--name" in command[:-1] else None
    if "--" in command:
        upstream = command[command.index("--") + 1:]
        return UpstreamConfig(name=given or guess_server_name(upstream), command=upstream) if upstream else None
    if "--url" in command[:-1]:
        url = command[command.index("--url") + 1]
        return UpstreamConfig(name=given or name, url=url)
    return None


async def _list_session(session) -> list[dict[str, Any]]:
    from mcp import types

    tools: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        # send_request, not list_tools: the SDK's list_tools may drop tools it finds invalid, and the lock must
        # pin exactly what the server offers
        result = await session.send_request(types.ListToolsRequest(params=params), types.ListToolsResult)
        tools.extend(t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in result.tools)
        cursor = result.next_cursor
        if not cursor:
            return tools
    raise LockError(f"the server paginated tools/list past {MAX_PAGES} pages")


async def list_tools(upstream: UpstreamConfig, *, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The tools one server lists (every page), as JSON objects, through a real MCP SDK client session."""
    from mcp import ClientSession

    async def run() -> list[dict[str, Any]]:
        async with contextlib.AsyncExitStack() as stack:
            if upstream.url:
                import httpx2
                from mcp.client.streamable_http import streamable_http_client

                client = await stack.enter_async_context(httpx2.AsyncClient(headers=upstream.headers or None))
                read, write = await stack.enter_async_context(streamable_http_client(upstream.url, http_client=client))
            else:
                from mcp.client.stdio import StdioServerParameters, stdio_client

                from cordum.sidecar.transports import _PRIVATE_ENV

                # the environment the sidecar gives it (a server may offer other tools in another one)
                env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV} | upstream.env
                params = StdioServerParameters(command=upstream.command[0], args=upstream.command[1:], env=env,
                                               cwd=upstream.cwd)
                errlog = stack.enter_context(open(os.devnull, "w"))  # noqa: SIM115
                read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            return await _list_session(session)

    try:
        return await asyncio.wait_for(run(), timeout)
    except LockError:
        raise
    except Exception as exc:  # start failure, protocol error, timeout: name the server
        detail = str(exc) or type(exc).__name__
        raise LockError(f"server {upstream.name}: could not list its tools: {detail}") from exc


def _upstreams(args: argparse.Namespace) -> list[UpstreamConfig]:
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    if command:
        return [UpstreamConfig(name=args.name or guess_server_name(command), command=command)]
    if args.url:
        from urllib.parse import urlparse

        headers = dict(h.split(":", 1) for h in args.header or [] if ":" in h)
        name = args.name or (urlparse(args.url).hostname or "remote").split(".")[0]
        return [UpstreamConfig(name=name, url=args.url, headers={k.strip(): v.strip() for k, v in headers.items()})]
    if args.config:
        return list(load_config(args.config).upstreams)
    if args.mcp_json:
        return upstreams_from_mcp_json(args.mcp_json)
    raise LockError("give --config sidecar.yaml, --mcp-json .mcp.json, --url URL or -- COMMAND ARGS")


def listings_from_sidecar(source: str) -> dict[str, list[dict[str, Any]]]:
    """The last complete tools/list of each upstream a sidecar fronts, from its spool: `source` is the sidecar's
    sidecar.yaml (.yaml/.yml) or the spool file itself."""
    path = Path(source).expanduser()
    if path.suffix in (".yaml", ".yml"):
        path = load_config(path).spool_path
    return listings_from_spool(path)


def listings_from_spool(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The listings a sidecar kept in the spool at `path` (opened read-only)."""
    import sqlite3

    from cordum.sidecar.pinning import LISTING_META_PREFIX

    if not path.is_file():
        raise LockError(f"no sidecar spool at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT key, value FROM meta WHERE key LIKE ?", (f"{LISTING_META_PREFIX}%",)).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise LockError(f"cannot read the sidecar spool {path}: {exc}") from exc
    listings = {}
    for key, value in sorted(rows):
        try:
            listings[key.removeprefix(LISTING_META_PREFIX)] = json.loads(value)["tools"]
        except (ValueError, KeyError, TypeError) as exc:
            raise LockError(f"{path}: unreadable listing under {key}: {exc}") from exc
    if not listings:
        raise LockError(f"the sidecar spool {path} holds no tools/list answer yet (let an agent list its tools)")
    return listings


def _read_lock(path: Path) -> ToolsLock | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    lock, errors = load_lock_text(text, str(path))
    if errors:
        raise LockError("; ".join(str(e) for e in errors[:3]))
    return lock


async def _listings(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Server name -> the tools it lists, from the source the arguments name (`--server` keeps only those)."""
    if args.from_sidecar:
        found = listings_from_sidecar(args.from_sidecar)
        names = list(found)
    else:
        upstreams = {u.name: u for u in _upstreams(args)}
        names = list(upstreams)
    wanted = [n for n in names if not args.server or n in set(args.server)]
    missing = set(args.server or ()) - set(names)
    if missing:
        raise LockError(f"no server named {', '.join(sorted(missing))} in the given source")
    if not wanted:
        raise LockError("no MCP server to list")
    if args.from_sidecar:
        return {n: found[n] for n in wanted}
    return {n: await list_tools(upstreams[n]) for n in wanted}


async def _lock(args: argparse.Namespace) -> int:
    listings = await _listings(args)
    path = Path(args.output) if args.output else Path(args.repo) / LOCK_FILENAME
    old = _read_lock(path)
    drifts = []
    for server, tools in listings.items():
        listed = [t for t in (listed_tool(x) for x in tools) if t is not None]
        pinned = (old.server(server) if old else None) or {}
        drifts.extend(compare_listing(server, pinned, listed, complete=True))
    for drift in drifts:
        print(f"{'drift' if args.check else 'pinned'}: {drift.describe()}", file=sys.stderr)
    if args.check:
        print(f"{len(drifts)} tool(s) differ from {path}" if drifts else f"{path} matches the live servers",
              file=sys.stderr)
        return 1 if drifts else 0
    new = lock_update(old, drifts)
    text = render_lock(new)
    if old is None or render_lock(old) != text:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}: {sum(len(t) for _, t in new.servers)} tools of {len(new.servers)} server(s)",
              file=sys.stderr)
    else:
        print(f"{path} is up to date", file=sys.stderr)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_lock(args))
    except LockError as exc:
        print(f"cordum policy lock: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # config errors and the like: a clear line, not a traceback
        print(f"cordum policy lock: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def add_lock_parser(psub: argparse._SubParsersAction) -> None:
    lock = psub.add_parser("lock", help="pin the tools of live MCP servers in tools.lock (or --check for drift)",
                           description="List the tools of live MCP servers with an MCP client and pin their names, "
                                       "descriptions and input schemas in REPO/tools.lock.")
    lock.add_argument("--repo", default=".", help="policy repository directory (default: .)")
    source = lock.add_mutually_exclusive_group()
    source.add_argument("--config", help="sidecar.yaml: lock its upstreams")
    source.add_argument("--mcp-json", help=".mcp.json: lock its mcpServers (sidecar-wrapped entries are unwrapped)")
    source.add_argument("--url", help="lock one streamable-HTTP MCP server")
    source.add_argument("--from-sidecar", metavar="CONFIG_OR_SPOOL",
                        help="lock what a sidecar last saw its upstreams list (its sidecar.yaml, or its spool file)")
    lock.add_argument("--header", action="append", default=[], help="K:V header for --url (repeatable)")
    lock.add_argument("--name", help="server name for -- COMMAND or --url (default: guessed as cordum-sidecar run "
                                     "does)")
    lock.add_argument("--server", action="append", help="lock only this server (repeatable)")
    lock.add_argument("--output", help="where to write (default: REPO/tools.lock)")
    lock.add_argument("--check", action="store_true", help="write nothing; exit 1 when the live tools differ")
    lock.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS: one stdio server to lock")
    lock.set_defaults(func=cmd_lock)
