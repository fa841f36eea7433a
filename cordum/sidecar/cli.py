"""`cordum-sidecar`: run the enforcement proxy, answer agent hooks, show status, install into agent configs.

    cordum-sidecar run --config sidecar.yaml
    cordum-sidecar run --bundle safety.yaml [--agent NAME] [--environment ENV] -- UPSTREAM_COMMAND ARGS...
    cordum-sidecar hook [--config sidecar.yaml | --bundle safety.yaml] [--agent-format claude-code|cursor]
    cordum-sidecar status [--config sidecar.yaml]
    cordum-sidecar install claude-code|cursor [--project DIR | --managed] [--dry-run]
    cordum-sidecar uninstall claude-code|cursor [--project DIR | --managed]

Logs are JSON lines on stderr; stdout belongs to the MCP protocol (run) or the hook answer (hook).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys

from cordum.sidecar import __version__
from cordum.sidecar.config import (
    DEFAULT_SPOOL,
    URL_TRANSPORTS,
    ConfigError,
    SidecarConfig,
    UpstreamConfig,
    guess_server_name,
    load_config,
)
from cordum.sidecar.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cordum-sidecar", description="Cordum MCP enforcement sidecar")
    p.add_argument("--version", action="version", version=f"cordum-sidecar {__version__}")
    p.add_argument("--log-level", default=os.environ.get("CORDUM_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="sidecar.yaml")
        sp.add_argument("--bundle", help="local policy: signed bundle JSON or plain safety.yaml (offline)")
        sp.add_argument("--agent", help="agent name used for local evaluation")
        sp.add_argument("--team")
        sp.add_argument("--environment")
        sp.add_argument("--spool", help=f"SQLite spool path (default {DEFAULT_SPOOL} or $CORDUM_SIDECAR_SPOOL)")

    run = sub.add_parser("run", help="run the proxy in front of MCP servers")
    common(run)
    run.add_argument("--name", help="server name of the upstream given after -- (default: guessed from it)")
    run.add_argument("--url", help="front a streamable-HTTP MCP server instead of a command")
    run.add_argument("--header", action="append", default=[], help="K:V header for --url (repeatable)")
    run.add_argument("--transport", choices=URL_TRANSPORTS, default="http",
                     help="--url speaks streamable HTTP (http, default) or the older HTTP+SSE transport (sse)")
    run.add_argument("upstream", nargs=argparse.REMAINDER, help="-- UPSTREAM_COMMAND ARGS...")

    hook = sub.add_parser("hook", help="answer a Claude Code PreToolUse or Cursor hook event (stdin -> stdout)")
    common(hook)
    hook.add_argument("--agent-format", choices=["claude-code", "cursor"], default="claude-code")

    status = sub.add_parser("status", help="bundle version, spool depth, last upload")
    common(status)

    install = sub.add_parser("install", help="put every MCP server of an agent config behind the sidecar")
    install.add_argument("target", choices=["claude-code", "cursor"])
    install.add_argument("--project", default=None,
                         help="project directory (default: current directory); with --managed, where servers come from")
    install.add_argument("--managed", action="store_true", help="write managed-mcp.json for fleet-wide enforcement")
    install.add_argument("--managed-dir", help="directory for managed-mcp.json (default: the OS's managed path)")
    install.add_argument("--config", help="sidecar.yaml the installed entries use")
    install.add_argument("--bundle", help="local policy the installed entries use (instead of --config)")
    install.add_argument("--sidecar-command", help="how to launch the sidecar (default: cordum-sidecar)")
    install.add_argument("--no-hook", action="store_true", help="do not register the agent hook")
    install.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")

    uninstall = sub.add_parser("uninstall", help="put back the files `install` changed, byte for byte")
    uninstall.add_argument("target", choices=["claude-code", "cursor"])
    uninstall.add_argument("--project", default=None, help="project directory (default: current directory)")
    uninstall.add_argument("--managed", action="store_true", help="restore the managed files instead")
    uninstall.add_argument("--managed-dir", help="directory of the managed files (default: the OS's managed path)")
    return p


def config_from_args(args: argparse.Namespace) -> SidecarConfig:
    cfg = load_config(args.config) if args.config else SidecarConfig(
        spool=os.environ.get("CORDUM_SIDECAR_SPOOL", DEFAULT_SPOOL)
    )
    changes = {}
    for name in ("agent", "team", "environment", "spool"):
        value = getattr(args, name, None)
        if value:
            changes[name] = value
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
    return cfg


def run_async(coro) -> int:
    """Run on uvloop when it is installed (requirements/sidecar.txt pins it: about half the relay cost of
    the default loop), else on asyncio's own loop. CORDUM_SIDECAR_LOOP=asyncio forces the default."""
    factory = None
    if os.environ.get("CORDUM_SIDECAR_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _cmd_run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    command = list(args.upstream or [])
    if command and command[0] == "--":
        command = command[1:]
    if command:
        name = args.name or guess_server_name(command)
        cfg = dataclasses.replace(cfg, upstreams=(UpstreamConfig(name=name, command=command),))
    elif args.url:
        from urllib.parse import urlparse

        headers = dict(h.split(":", 1) for h in args.header if ":" in h)
        name = args.name or (urlparse(args.url).hostname or "remote").split(".")[0]
        cfg = dataclasses.replace(cfg, upstreams=(UpstreamConfig(
            name=name, url=args.url, headers={k.strip(): v.strip() for k, v in headers.items()},
            transport=args.transport),))
    if not cfg.upstreams:
        print("cordum-sidecar run: no upstream MCP server (give `-- COMMAND ARGS...` or upstreams: in --config)",
              file=sys.stderr)
        return 2
    if not args.bundle and not args.config:
        print("cordum-sidecar run: give --config sidecar.yaml or --bundle FILE", file=sys.stderr)
        return 2
    if cfg.listen != "stdio":
        from cordum.sidecar.http_listen import run_http

        return run_async(run_http(cfg, local_bundle=args.bundle))
    from cordum.sidecar.runtime import run_stdio

    return run_async(run_stdio(cfg, local_bundle=args.bundle))


def _cmd_hook(args: argparse.Namespace) -> int:
    from cordum.sidecar.hook import run_hook

    return run_hook(config_from_args(args), local_bundle=args.bundle, agent_format=args.agent_format)


def _cmd_status(args: argparse.Namespace) -> int:
    from cordum.sidecar.status import status_report

    report = status_report(config_from_args(args), local_bundle=args.bundle)
    print(json.dumps(report, indent=2))
    return 0


def _cmd_install(args: argparse.Namespace) -> int:
    from cordum.sidecar.install import install

    return install(args)


def _cmd_uninstall(args: argparse.Namespace) -> int:
    from cordum.sidecar.install import uninstall

    return uninstall(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return {"run": _cmd_run, "hook": _cmd_hook, "status": _cmd_status, "install": _cmd_install,
                "uninstall": _cmd_uninstall}[args.command](
            args
        )
    except ConfigError as exc:
        print(f"cordum-sidecar: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
