"""Assembly: spool + enforcer + policy source + uploader + heartbeat + approvals + relay + transports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from cordum.sidecar import __version__
from cordum.sidecar.approvals import ApprovalClient
from cordum.sidecar.config import SidecarConfig
from cordum.sidecar.enforcer import Enforcer, PolicyLoadError, load_local_policy, policy_from_bundle
from cordum.sidecar.heartbeat import Heartbeat
from cordum.sidecar.ids import uuid7
from cordum.sidecar.proxy import Relay, jsonrpc_error
from cordum.sidecar.spool import Spool
from cordum.sidecar.telemetry import Telemetry, telemetry_from_settings
from cordum.sidecar.transports import StdioAgentSide, make_upstream
from cordum.sidecar.uploader import Uploader

log = logging.getLogger("cordum.sidecar")


def new_session_id() -> str:
    return "sess_" + uuid7().hex


def control_plane_client(cfg: SidecarConfig, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=cfg.control_plane or "",
        headers={"Authorization": f"Bearer {token}", "User-Agent": f"cordum-sidecar/{__version__}"},
        timeout=httpx.Timeout(15.0, connect=5.0),
    )


@dataclass
class Services:
    """Everything but the relay: shared by the proxy (`run`) and the hook."""

    cfg: SidecarConfig
    spool: Spool
    enforcer: Enforcer
    http: httpx.AsyncClient | None = None
    uploader: Uploader | None = None
    approvals: ApprovalClient | None = None
    heartbeat: Heartbeat | None = None
    bundle_client: Any = None
    tasks: list[asyncio.Task] = field(default_factory=list)
    offline: bool = True
    telemetry: Telemetry | None = None

    async def close(self, *, drain_seconds: float = 3.0) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.uploader is not None and drain_seconds > 0:
            with contextlib.suppress(Exception):
                await self.uploader.drain(deadline=time.monotonic() + drain_seconds)
            if self.heartbeat is not None:  # a last beat: the fleet view sees the final spool depth
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.heartbeat.beat(), timeout=2.0)
        if self.bundle_client is not None:
            with contextlib.suppress(Exception):
                await self.bundle_client.aclose()
        if self.http is not None:
            await self.http.aclose()
        if self.telemetry is not None:  # before the spool closes: the last export reads its backlog
            await asyncio.to_thread(self.telemetry.shutdown)
        self.spool.close()

    def health(self) -> dict[str, Any]:
        """What telemetry reports about the sidecar itself (read from its exporter's or scraper's thread); the
        spool's depth is a query, handed over uncalled so only the backlog gauge runs it."""
        primary, uploader = self.enforcer.primary, self.uploader
        return {"spool_backlog": self.spool.depth, "policy_version": primary.version if primary else None,
                "last_upload_at": uploader.last_upload_at if uploader else None,
                "upload_failing": bool(uploader.last_error) if uploader else None}

    def attach_telemetry(self, *, listener: bool = False) -> None:
        """Turn on OTLP and/or Prometheus as sidecar.yaml and the environment say (both off by default)."""
        self.telemetry = telemetry_from_settings(self.cfg.telemetry, sidecar_id=self.enforcer.sidecar_id,
                                                 agent=self.cfg.agent, environment=self.cfg.environment,
                                                 version=__version__, listener=listener)
        if self.telemetry is not None:
            self.telemetry.set_health(self.health)
            self.enforcer.telemetry = self.telemetry

    def heartbeat_body(self) -> dict[str, Any]:
        primary, shadow = self.enforcer.primary, self.enforcer.shadow
        last = self.uploader.last_upload_at if self.uploader else None
        return {
            "sidecar_id": self.enforcer.sidecar_id,
            "hostname": socket.gethostname(),
            "version": __version__,
            "bundle_version": primary.version if primary else None,
            "bundle_sequence": primary.sequence if primary else None,
            "shadow_version": shadow.version if shadow else None,
            "spool_depth": self.spool.depth(),
            "last_upload_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)) if last else None,
            "counters": self.enforcer.counters.to_dict(),
        }


async def build_services(cfg: SidecarConfig, *, local_bundle: str | None = None, background: bool = True,  # noqa: C901 - builds the sidecar's services in dependency order (policy, spool, uploader, approvals) in one place
                         root: str | None = None) -> Services:
    """Open the spool, load the policy (local file or control plane), and start the background loops.

    `local_bundle` (the --bundle flag) means fully offline: no uploads, no heartbeats, no bundle fetches.
    """
    spool = Spool(cfg.spool_path, recover=background)
    if background:
        spool.start_checkpointer()
        spool.start_run()  # track open calls, so a sidecar killed mid-call is recovered by the next start
    # One installation (spool) may serve several sidecar processes: `install` wraps each MCP server of an
    # agent config in its own. Each reports under its own id, so the fleet view does not merge their counters.
    role = "hook" if not background else "+".join(u.name for u in cfg.upstreams) or "proxy"
    sidecar_id = cfg.sidecar_id or f"{spool.sidecar_id()}.{role}"[:128]
    enforcer = Enforcer(spool=spool, agent=cfg.agent, environment=cfg.environment, team=cfg.team,
                        sidecar_id=sidecar_id, root=root)
    svc = Services(cfg=cfg, spool=spool, enforcer=enforcer)
    if background:
        enforcer.recover_interrupted()
    bundle_file = local_bundle or (cfg.bundle if not cfg.control_plane else None)
    if bundle_file:
        try:
            enforcer.set_policy(load_local_policy(bundle_file, trusted_keys=cfg.trusted_keys))
        except PolicyLoadError as exc:
            enforcer.set_policy(None, reason=str(exc))
            log.error("no valid policy: every call will be denied", extra={"error": str(exc)})
        if local_bundle or not cfg.control_plane:
            return svc
    if not cfg.control_plane:
        enforcer.set_policy(None, reason="no policy configured (pass --bundle FILE or set control_plane)")
        return svc
    token = cfg.token()
    if not token:
        enforcer.set_policy(None, reason=f"no agent token (set {cfg.token_env or 'token_file'})")
        return svc
    svc.offline = False
    svc.http = control_plane_client(cfg, token)
    up = cfg.upload
    svc.uploader = Uploader(spool, svc.http, batch_size=up.batch_size, interval=up.interval_seconds,
                            linger=up.linger_seconds, max_backoff=up.max_backoff_seconds)
    enforcer.on_record = svc.uploader.notify
    a = cfg.approvals
    svc.approvals = ApprovalClient(svc.http, poll_wait_seconds=a.poll_wait_seconds,
                                   progress_interval_seconds=a.progress_interval_seconds,
                                   max_wait_seconds=a.max_wait_seconds)
    svc.heartbeat = Heartbeat(svc.http, svc.heartbeat_body, interval=cfg.heartbeat_interval_seconds)

    from cordum.sidecar.bundles import BundleClient, BundleStore, KeyStore

    def apply(_bundle: dict | None = None) -> None:
        client = svc.bundle_client
        current, shadow = client.current, client.shadow
        if current is not None:
            try:
                enforcer.set_policy(policy_from_bundle(current, source=cfg.control_plane))
            except PolicyLoadError as exc:
                enforcer.set_policy(None, reason=str(exc))
        try:
            enforcer.set_shadow(policy_from_bundle(shadow, source="shadow") if shadow else None)
        except PolicyLoadError as exc:
            log.error("shadow bundle unreadable", extra={"error": str(exc)})
            enforcer.set_shadow(None)

    if not cfg.trusted_keys:
        enforcer.set_policy(None, reason="no trusted_keys configured, so no bundle can be verified")
    svc.bundle_client = BundleClient(cfg.control_plane, token, cfg.trusted_keys, BundleStore(cfg.bundle_store_path),
                                     on_update=apply, key_store=KeyStore(cfg.key_store_path))
    if svc.bundle_client.current is not None:
        apply()
    else:
        enforcer.set_policy(None, reason="no valid policy bundle has been received from the control plane yet")
    enforcer.no_policy_detail = lambda: svc.bundle_client.last_error
    # Before serving: a proxy with nothing on disk fetches once (so the first call is not denied needlessly);
    # the hook, one process per event with no long-poll of its own, revalidates every time (a 304 is cheap).
    # Either falls back to the stored bundle (or to fail closed) when the control plane does not answer.
    if svc.bundle_client.current is None or not background:
        try:
            await asyncio.wait_for(svc.bundle_client.fetch(wait=0), timeout=5.0 if background else 1.5)
        except Exception as exc:  # unreachable, refused bundle, timeout: keep what we hold
            svc.bundle_client.last_error = str(exc) or type(exc).__name__
            log.warning("initial bundle fetch failed", extra={"error": svc.bundle_client.last_error})
    if background:
        svc.tasks.append(asyncio.create_task(svc.bundle_client.run_forever(), name="bundles"))
        svc.tasks.append(asyncio.create_task(svc.uploader.run(), name="uploader"))
        svc.tasks.append(asyncio.create_task(svc.heartbeat.run(), name="heartbeat"))
    return svc


async def read_agent_line(reader: asyncio.StreamReader, agent: StdioAgentSide) -> bytes | None:
    """The agent's next line, stripped (b"" for a blank or refused one), or None at end of input. A line over
    LINE_LIMIT is answered with a JSON-RPC error and skipped, so one huge message never ends the session."""
    try:
        line = await reader.readline()
    except ValueError:
        agent.send(jsonrpc_error(None, -32600, "Invalid Request: message too large"))
        return b""
    return line.strip() if line else None


async def run_stdio(cfg: SidecarConfig, *, local_bundle: str | None = None) -> int:
    """Serve one agent on stdin/stdout in front of the configured upstreams until the agent hangs up."""
    svc = await build_services(cfg, local_bundle=local_bundle)
    svc.attach_telemetry()
    upstreams = [make_upstream(u) for u in cfg.upstreams]
    agent = StdioAgentSide()
    relay = Relay(upstreams=upstreams, enforcer=svc.enforcer, send_agent=agent.send, session_id=new_session_id(),
                  approvals=svc.approvals)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    exit_code = 0
    try:
        for up in upstreams:
            await up.start(relay.on_upstream_line)
        reader = await agent.open()

        async def pump_agent() -> None:
            while (line := await read_agent_line(reader, agent)) is not None:
                if line:
                    relay.on_agent_line(line)

        async def watch_upstreams() -> None:
            pending = {asyncio.create_task(u.closed.wait()): u for u in upstreams}
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    relay.upstream_closed(pending.pop(t))

        log.info("sidecar ready", extra={"pid": os.getpid(), "session_id": relay.session_id, "upstreams": [u.name for u in upstreams],
                                          "offline": svc.offline, "sidecar_id": svc.enforcer.sidecar_id})
        waiters = [asyncio.create_task(pump_agent(), name="agent"), asyncio.create_task(watch_upstreams()),
                   asyncio.create_task(stop.wait())]
        done, rest = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for t in rest:
            t.cancel()
        for t in done:
            if t.exception() is not None:
                log.error("sidecar stopped on an error", extra={"error": repr(t.exception())})
                exit_code = 1
    except OSError as exc:
        log.error("could not start an upstream", extra={"error": str(exc)})
        exit_code = 1
    finally:
        await relay.cancel_held()
        relay.abandon_calls()
        await agent.flush()
        for up in upstreams:
            with contextlib.suppress(Exception):
                await up.close()
        await svc.close()
    return exit_code
