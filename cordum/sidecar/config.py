"""sidecar.yaml: where the control plane is, who this agent is, and which upstream MCP servers to front.

```yaml
control_plane: https://cordum.example.com   # omitted: offline, needs `bundle:` (or --bundle)
token_env: CORDUM_AGENT_TOKEN              # or token_file: ~/.config/cordum/token
agent: claude-code-mo                      # used for local evaluation; the server trusts only the token
team: payments
environment: dev
spool: ~/.local/state/cordum/spool.db
bundle_store: ~/.local/state/cordum/spool.bundle.json   # last good verified bundle (default: <spool>.bundle.json)
bundle: safety.yaml                        # optional local policy (signed bundle JSON or plain safety.yaml)
listen: stdio                              # or http://127.0.0.1:8765/mcp
upstreams:
  - {name: git, command: [python, -m, mcp_server_git, --repository, .]}
  - {name: fs, command: [npx, -y, "@modelcontextprotocol/server-filesystem", .], env: {DEBUG: "0"}}
  - {name: remote, url: https://tools.example.com/mcp, headers: {X-Team: payments}}
  - {name: legacy, url: https://old.example.com/sse, transport: sse}   # the older HTTP+SSE transport
trusted_keys: {k_2026_01: "<base64 raw Ed25519 public key>"}
approvals: {poll_wait_seconds: 25, progress_interval_seconds: 5, max_wait_seconds: 900}
hook: {approval_wait_seconds: 50, on_approval_timeout: policy, server: claude-code}
upload: {batch_size: 500, linger_seconds: 0.05, interval_seconds: 1.0, max_backoff_seconds: 60}
heartbeat: {interval_seconds: 15}
telemetry: {otlp: auto, prometheus: off}   # OTLP spans/metrics and Prometheus /metrics: docs/operations/telemetry.md
```
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cordum.sidecar.telemetry import TelemetryConfigError, TelemetrySettings

DEFAULT_SPOOL = "~/.local/state/cordum/spool.db"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConfigError(Exception):
    """sidecar.yaml is missing, unreadable or invalid; the message names the field."""


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass(frozen=True)
class UpstreamConfig:
    name: str
    command: list[str] | None = None
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    transport: str = "http"  # for url upstreams: "http" (streamable HTTP) or "sse" (the older HTTP+SSE transport)


URL_TRANSPORTS = ("http", "sse")


@dataclass(frozen=True)
class ApprovalSettings:
    poll_wait_seconds: int = 25            # ?wait=N per long-poll
    progress_interval_seconds: float = 5.0  # notifications/progress cadence while waiting
    max_wait_seconds: float | None = None   # cap over the policy's approval timeout (None: the policy's)


# What the docs and the demo name an MCP entry that is itself a Cordum sidecar (over HTTP): never wrapped again
# by the installer, and its calls are left to it by the hook.
SIDECAR_SERVER_NAMES = ("cordum",)


@dataclass(frozen=True)
class HookSettings:
    approval_wait_seconds: float = 50.0  # stay inside the agent's hook timeout (Claude Code: 60 s default)
    # policy | ask | deny: what the hook answers when no reviewer decided in time (or offline). `policy`: ask the
    # person at the terminal only where the policy lets an agent's owner approve (allow_self_approval), else deny.
    on_approval_timeout: str = "policy"
    server: str = "claude-code"          # server name the agents' built-in tools (Bash, Edit, ...) map under
    # MCP servers (as the agent names them) a Cordum sidecar fronts over HTTP, so the hook leaves their calls to it
    # (one gate per call). Servers launched through the sidecar in .mcp.json are found without this; "cordum" is
    # the name the docs and the demo give an HTTP sidecar.
    sidecar_servers: tuple[str, ...] = SIDECAR_SERVER_NAMES


@dataclass(frozen=True)
class UploadSettings:
    """How evidence leaves the spool. Bigger batches and a longer linger mean fewer, larger POSTs (less load
    on the control plane); a shorter linger means evidence is visible sooner."""

    batch_size: int = 500                # records per POST (the control plane takes at most 5000)
    linger_seconds: float = 0.05         # after a new record, wait this long so a batch can form
    interval_seconds: float = 1.0        # upload at least this often with no new record (retries, leftovers)
    max_backoff_seconds: float = 60.0    # cap of the exponential backoff (with jitter) while uploads fail

    def __post_init__(self) -> None:
        _expect(isinstance(self.batch_size, int) and not isinstance(self.batch_size, bool)
                and 1 <= self.batch_size <= 5000, "upload.batch_size: an integer from 1 to 5000")
        for name, low, high in (("linger_seconds", 0.0, 60.0), ("interval_seconds", 0.01, 3600.0),
                                ("max_backoff_seconds", 0.5, 86400.0)):
            value = getattr(self, name)
            _expect(isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high,
                    f"upload.{name}: a number of seconds from {low:g} to {high:g}")


@dataclass(frozen=True)
class SidecarConfig:
    control_plane: str | None = None
    token_env: str | None = "CORDUM_AGENT_TOKEN"
    token_file: str | None = None
    agent: str = "agent"
    team: str | None = None
    environment: str = "dev"
    spool: str = DEFAULT_SPOOL
    bundle_store: str | None = None
    bundle: str | None = None
    listen: str = "stdio"
    upstreams: tuple[UpstreamConfig, ...] = ()
    trusted_keys: dict[str, str] = field(default_factory=dict)
    approvals: ApprovalSettings = ApprovalSettings()
    hook: HookSettings = HookSettings()
    upload: UploadSettings = UploadSettings()
    heartbeat_interval_seconds: float = 15.0
    telemetry: TelemetrySettings = TelemetrySettings()
    sidecar_id: str | None = None
    source: str | None = None  # path the config was read from

    @property
    def spool_path(self) -> Path:
        return Path(os.path.expanduser(self.spool))

    @property
    def bundle_store_path(self) -> Path:
        if self.bundle_store:
            return Path(os.path.expanduser(self.bundle_store))
        # Named after the spool, so sidecars whose spools share a folder never share (or overwrite) one bundle.
        return self.spool_path.with_name(self.spool_path.stem + ".bundle.json")

    @property
    def key_store_path(self) -> Path:
        """Signing keys learned through rotation (endorsed by a trusted key), next to the bundle store."""
        store = self.bundle_store_path
        return store.with_name(store.name.removesuffix(".json") + ".keys.json")

    def token(self) -> str | None:
        """The agent token from token_file or token_env; None when neither yields one."""
        if self.token_file:
            path = Path(os.path.expanduser(self.token_file))
            try:
                return path.read_text().strip() or None
            except OSError as exc:
                raise ConfigError(f"token_file: cannot read {path}: {exc.strerror}") from exc
        if self.token_env:
            return os.environ.get(self.token_env) or None
        return None

    def hostname(self) -> str:
        return socket.gethostname()


def _upstream(i: int, raw: Any) -> UpstreamConfig:
    where = f"upstreams[{i}]"
    _expect(isinstance(raw, dict), f"{where}: expected a mapping with name and command or url")
    unknown = set(raw) - {"name", "command", "url", "env", "cwd", "headers", "transport"}
    _expect(not unknown, f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    name = raw.get("name")
    _expect(isinstance(name, str) and bool(_NAME_RE.match(name or "")),
            f"{where}.name: required, letters/digits/._- only")
    _expect("__" not in name, f"{where}.name: must not contain '__' (it separates server and tool names)")
    command, url = raw.get("command"), raw.get("url")
    _expect((command is None) != (url is None), f"{where}: give exactly one of command or url")
    if isinstance(command, str):
        command = command.split()
    if command is not None:
        _expect(isinstance(command, list) and command and all(isinstance(c, str) for c in command),
                f"{where}.command: a non-empty list of strings")
    if url is not None:
        _expect(isinstance(url, str) and url.startswith(("http://", "https://")), f"{where}.url: an http(s) URL")
    env = raw.get("env") or {}
    _expect(isinstance(env, dict), f"{where}.env: a mapping of strings")
    headers = raw.get("headers") or {}
    _expect(isinstance(headers, dict), f"{where}.headers: a mapping of strings")
    cwd = raw.get("cwd")
    transport = raw.get("transport", "http")
    _expect(transport in URL_TRANSPORTS, f"{where}.transport: one of {', '.join(URL_TRANSPORTS)}")
    return UpstreamConfig(
        name=name, command=list(command) if command else None, url=url,
        env={str(k): str(v) for k, v in env.items()}, cwd=os.path.expanduser(cwd) if cwd else None,
        headers={str(k): str(v) for k, v in headers.items()}, transport=transport,
    )


_TOP_KEYS = {
    "control_plane", "token_env", "token_file", "agent", "team", "environment", "spool", "bundle_store", "bundle",
    "listen", "upstreams", "trusted_keys", "approvals", "hook", "upload", "heartbeat", "sidecar_id", "telemetry",
}


def config_from_dict(data: dict[str, Any], *, source: str | None = None) -> SidecarConfig:
    _expect(isinstance(data, dict), "sidecar config: expected a mapping at the top level")
    unknown = set(data) - _TOP_KEYS
    _expect(not unknown, f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_TOP_KEYS))}")
    control_plane = data.get("control_plane")
    if control_plane is not None:
        _expect(isinstance(control_plane, str) and control_plane.startswith(("http://", "https://")),
                "control_plane: an http(s) URL")
        control_plane = control_plane.rstrip("/")
    listen = str(data.get("listen") or "stdio")
    _expect(listen == "stdio" or listen.startswith("http://"), "listen: 'stdio' or http://HOST:PORT/PATH")
    raw_upstreams = data.get("upstreams") or []
    _expect(isinstance(raw_upstreams, list), "upstreams: a list")
    upstreams = tuple(_upstream(i, u) for i, u in enumerate(raw_upstreams))
    names = [u.name for u in upstreams]
    _expect(len(names) == len(set(names)), "upstreams: names must be unique")
    keys = data.get("trusted_keys") or {}
    if isinstance(keys, list):  # the shape of GET /api/v1/keys is accepted too
        keys = {k["key_id"]: k["public_key"] for k in keys if isinstance(k, dict)}
    _expect(isinstance(keys, dict), "trusted_keys: a mapping key_id -> base64 public key")
    appr = data.get("approvals") or {}
    hook = data.get("hook") or {}
    upload = data.get("upload") or {}
    heartbeat = data.get("heartbeat") or {}
    for name, section in (("approvals", appr), ("hook", hook), ("upload", upload), ("heartbeat", heartbeat)):
        _expect(isinstance(section, dict), f"{name}: a mapping")
    try:
        approvals = ApprovalSettings(**appr)
    except TypeError as exc:
        raise ConfigError(f"approvals: {exc}") from exc
    try:
        if "sidecar_servers" in hook:
            _expect(isinstance(hook["sidecar_servers"], list) and all(isinstance(n, str) for n in hook["sidecar_servers"]),
                    "hook.sidecar_servers: a list of MCP server names")
            hook = {**hook, "sidecar_servers": tuple(hook["sidecar_servers"])}
        hook_settings = HookSettings(**hook)
    except TypeError as exc:
        raise ConfigError(f"hook: {exc}") from exc
    try:
        upload_settings = UploadSettings(**upload)
    except TypeError as exc:
        raise ConfigError(f"upload: {exc}") from exc
    try:
        telemetry = TelemetrySettings.from_dict(data.get("telemetry"))
    except TelemetryConfigError as exc:
        raise ConfigError(str(exc)) from exc
    _expect(hook_settings.on_approval_timeout in ("policy", "ask", "deny"),
            "hook.on_approval_timeout: policy, ask or deny")
    token_file = data.get("token_file")
    return SidecarConfig(
        control_plane=control_plane,
        token_env=None if token_file and "token_env" not in data else data.get("token_env", "CORDUM_AGENT_TOKEN"),
        token_file=token_file,
        agent=str(data.get("agent") or "agent"),
        team=data.get("team"),
        environment=str(data.get("environment") or "dev"),
        spool=str(data.get("spool") or DEFAULT_SPOOL),
        bundle_store=data.get("bundle_store"),
        bundle=data.get("bundle"),
        listen=listen,
        upstreams=upstreams,
        trusted_keys={str(k): str(v) for k, v in keys.items()},
        approvals=approvals,
        hook=hook_settings,
        upload=upload_settings,
        heartbeat_interval_seconds=float(heartbeat.get("interval_seconds", 15.0)),
        telemetry=telemetry,
        sidecar_id=data.get("sidecar_id"),
        source=source,
    )


def load_config(path: str | os.PathLike[str]) -> SidecarConfig:
    p = Path(os.path.expanduser(str(path)))
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    try:
        cfg = config_from_dict(data, source=str(p))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    # Relative paths in the file are relative to the file, not to the caller's cwd.
    base = p.parent
    changes: dict[str, Any] = {}
    if cfg.bundle and not os.path.isabs(os.path.expanduser(cfg.bundle)):
        changes["bundle"] = str(base / cfg.bundle)
    if not os.path.isabs(os.path.expanduser(cfg.spool)):
        changes["spool"] = str(base / cfg.spool)
    if cfg.token_file and not os.path.isabs(os.path.expanduser(cfg.token_file)):
        changes["token_file"] = str(base / cfg.token_file)
    if changes:
        from dataclasses import replace

        cfg = replace(cfg, **changes)
    return cfg


def guess_server_name(command: list[str]) -> str:
    """A policy-friendly server name for an upstream command: `mcp-server-git`/`mcp_server_git` -> git,
    `@modelcontextprotocol/server-filesystem` -> filesystem; otherwise the executable's basename."""
    known = server_identity(command)
    if known:
        return known
    base = os.path.basename(command[0]) if command else "upstream"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", base) or "upstream"


def server_identity(command: list[str]) -> str | None:
    """What an upstream is, from the package it runs (`filesystem` for the reference filesystem server however
    the user named it); None when the command does not say."""
    for token in command:
        base = token.rsplit("/", 1)[-1]
        for prefix in ("mcp-server-", "mcp_server_", "server-"):
            if base.startswith(prefix) and len(base) > len(prefix):
                name = base[len(prefix):].split("@", 1)[0]
                return re.sub(r"[^A-Za-z0-9_.-]", "-", name)
        for suffix in ("-mcp-server", "-mcp", "_mcp"):
            if base.endswith(suffix) and len(base) > len(suffix):
                return re.sub(r"[^A-Za-z0-9_.-]", "-", base[: -len(suffix)])
    return None
