"""The agent-facing side over streamable HTTP (`listen: http://127.0.0.1:8765/mcp`).

Each MCP session (Mcp-Session-Id) gets the mcp SDK's `StreamableHTTPServerTransport`, its own upstream
connections (stdio upstreams are spawned per session, as an agent launching them directly would) and its own
`Relay`, so enforcement and evidence are exactly those of the stdio path. Messages are converted between the
SDK's `SessionMessage` and JSON bytes at this edge only. Progress notifications are routed to the SSE stream
of the request that asked for them (by progressToken), so an agent waiting on a held call sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any
from urllib.parse import urlparse
from uuid import uuid4

import orjson

from cordum.sidecar.config import SidecarConfig
from cordum.sidecar.proxy import Relay, invalid_message, valid_id
from cordum.sidecar.runtime import Services, build_services, new_session_id
from cordum.sidecar.transports import LINE_LIMIT, make_upstream

log = logging.getLogger("cordum.sidecar.http")


class HttpSession:
    def __init__(self, svc: Services, cfg: SidecarConfig, security) -> None:
        from mcp.server.streamable_http import StreamableHTTPServerTransport

        self.id = uuid4().hex
        self.transport = StreamableHTTPServerTransport(mcp_session_id=self.id, security_settings=security,
                                                       idle_timeout=1800)
        self.svc = svc
        self.cfg = cfg
        self.ready = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.failed: BaseException | None = None
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._progress_requests: dict[Any, Any] = {}  # progressToken -> agent request id
        self._unanswered: set[Any] = set()  # ids of the agent's tools/call requests not answered yet
        self.relay: Relay | None = None

    def request_stream_closed(self, body: bytes) -> None:
        """A POST's response stream ended. A tools/call in it still unanswered lost its only way back: this
        transport keeps no event store, so the agent cannot resume the stream and the answer could never be
        delivered. A call still held for approval is withdrawn rather than run for nobody."""
        try:
            message = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return
        for item in message if isinstance(message, list) else [message]:
            if isinstance(item, dict) and item.get("method") == "tools/call" and item.get("id") in self._unanswered:
                self._unanswered.discard(item["id"])
                if self.relay is not None:
                    self.relay.withdraw(item["id"], "the agent's connection closed while the call waited for "
                                                    "approval (its answer could not be delivered)")

    def send_agent(self, data: bytes) -> None:
        self._outbox.put_nowait(data)

    async def run(self) -> None:  # noqa: C901 - the per-session state machine of the streamable HTTP transport (requests, streams, cancellation)
        import anyio
        import mcp_types
        from mcp.shared.message import ServerMessageMetadata, SessionMessage

        upstreams = [make_upstream(u) for u in self.cfg.upstreams]
        relay = self.relay = Relay(upstreams=upstreams, enforcer=self.svc.enforcer, send_agent=self.send_agent,
                                   session_id=new_session_id(), approvals=self.svc.approvals)
        try:
            async with self.transport.connect() as (read, write):
                for up in upstreams:
                    await up.start(relay.on_upstream_line)
                self.ready.set()
                log.info("http session opened", extra={"mcp_session": self.id, "session_id": relay.session_id})

                async def pump_out() -> None:
                    while True:
                        data = await self._outbox.get()
                        msg = mcp_types.jsonrpc_message_adapter.validate_json(data, by_name=False)
                        raw = orjson.loads(data)
                        meta = None
                        if raw.get("method") == "notifications/progress":
                            token = (raw.get("params") or {}).get("progressToken")
                            related = self._progress_requests.get(token)
                            if related is not None:
                                meta = ServerMessageMetadata(related_request_id=related)
                        elif "method" not in raw:
                            self._unanswered.discard(raw.get("id"))
                            for token, rid in list(self._progress_requests.items()):
                                if rid == raw.get("id"):
                                    del self._progress_requests[token]
                        await write.send(SessionMessage(msg, metadata=meta))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(pump_out)
                    scope = self.transport.idle_scope or anyio.CancelScope()
                    with scope, contextlib.suppress(anyio.ClosedResourceError, anyio.EndOfStream):
                        async for item in read:  # ends when the agent deletes the session or it idles out
                            if isinstance(item, Exception):
                                continue
                            data = item.message.model_dump_json(by_alias=True, exclude_unset=True).encode()
                            raw = orjson.loads(data)
                            token = ((raw.get("params") or {}).get("_meta") or {}).get("progressToken") \
                                if isinstance(raw, dict) else None
                            if token is not None and "id" in raw:
                                self._progress_requests[token] = raw["id"]
                            if isinstance(raw, dict) and raw.get("method") == "tools/call" and "id" in raw:
                                self._unanswered.add(raw["id"])
                            relay.on_agent_line(data)
                    tg.cancel_scope.cancel()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed = exc
            log.exception("http session failed", extra={"mcp_session": self.id})
        finally:
            self.ready.set()
            # A call still held for approval when its session ends (deleted by the agent, idled out) has nobody
            # left to answer: withdraw the approval request (recorded cancelled) so a later approval cannot run it.
            await relay.cancel_held()
            for up in upstreams:
                with contextlib.suppress(Exception):
                    await up.close()
            relay.abandon_calls()  # forwarded calls whose answer never came: recorded failed, not left open
            self.svc.enforcer.end_session(relay.session_id)  # its session labels go with it
            log.info("http session closed", extra={"mcp_session": self.id})


def refuse_http_request(headers: dict[str, str]) -> tuple[int, int, str] | None:
    """Why a streamable-HTTP request is refused before any session sees it, as (HTTP status, JSON-RPC code,
    message), or None. The sidecar relays the initialize handshake, so it speaks the handshake revisions only."""
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

    version = headers.get("mcp-protocol-version")
    if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
        return 400, -32600, (f"Bad Request: unsupported MCP-Protocol-Version {version!r} "
                             f"(supported: {', '.join(HANDSHAKE_PROTOCOL_VERSIONS)})")
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > LINE_LIMIT:
        return 413, -32600, f"Invalid Request: message too large (limit {LINE_LIMIT} bytes)"
    return None


async def read_body(receive):
    """Read a POST body whole (so it can be checked before the SDK transport sees it) and return it with a
    `receive` that replays it, then passes on what follows (the client disconnecting)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > LINE_LIMIT or not message.get("more_body"):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


def invalid_body(body: bytes) -> tuple[int, int, str, Any] | None:
    """Why a POSTed body is not JSON-RPC MCP accepts, as (HTTP status, JSON-RPC code, message, id), or None.
    The same rules as stdio (Relay's invalid_message); the SDK transport alone would take an object id for a
    notification and accept it silently."""
    if len(body) > LINE_LIMIT:
        return 413, -32600, f"Invalid Request: message too large (limit {LINE_LIMIT} bytes)", None
    try:
        msg = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 400, -32700, "Parse error", None
    for item in (msg if isinstance(msg, list) else [msg]):
        problem = invalid_message(item)
        if problem is not None:
            req_id = item.get("id") if isinstance(item, dict) and valid_id(item.get("id")) else None
            return 400, *problem, req_id
    if isinstance(msg, list) and not msg:
        return 400, -32600, "Invalid Request: empty batch", None
    return None


async def lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def metrics_served(svc: Services) -> bool:
    return svc.telemetry is not None and svc.telemetry.registry is not None


async def serve_metrics(svc: Services, scope, receive, send, *, allowed_hosts: list[str]) -> None:
    """GET /metrics in the Prometheus text format, on the MCP listener (`telemetry.prometheus: on`). The same
    Host check as the MCP endpoint, so a web page cannot read it through DNS rebinding."""
    from starlette.responses import JSONResponse, Response

    headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    if headers.get("host") not in allowed_hosts:
        await JSONResponse({"message": "Host not allowed"}, status_code=421)(scope, receive, send)
        return
    if scope["method"] not in ("GET", "HEAD"):
        await JSONResponse({"message": "method not allowed: GET /metrics"}, status_code=405,
                           headers={"Allow": "GET"})(scope, receive, send)
        return
    body, content_type = await asyncio.to_thread(svc.telemetry.exposition)
    await Response(body, media_type=content_type)(scope, receive, send)


async def run_http(cfg: SidecarConfig, *, local_bundle: str | None = None) -> int:  # noqa: C901 - the HTTP listener's whole lifecycle (app, sessions, shutdown) in one place
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.responses import JSONResponse

    url = urlparse(cfg.listen)
    host, port, path = url.hostname or "127.0.0.1", url.port or 8765, url.path or "/mcp"
    security = TransportSecuritySettings(enable_dns_rebinding_protection=True,
                                         allowed_hosts=[f"{host}:{port}", f"127.0.0.1:{port}", f"localhost:{port}"],
                                         allowed_origins=[f"http://{host}:{port}", f"http://127.0.0.1:{port}",
                                                          f"http://localhost:{port}"])
    svc = await build_services(cfg, local_bundle=local_bundle)
    svc.attach_telemetry(listener=True)
    sessions: dict[str, HttpSession] = {}

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] == "http" and scope["path"] == "/metrics" and metrics_served(svc):
            await serve_metrics(svc, scope, receive, send, allowed_hosts=security.allowed_hosts)
            return
        if scope["type"] != "http" or scope["path"].rstrip("/") != path.rstrip("/"):
            await JSONResponse({"message": "not found"}, status_code=404)(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = refuse_http_request(headers)
        if refusal is not None:
            status, code, text = refusal
            await JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": text}},
                               status_code=status)(scope, receive, send)
            return
        body = b""
        if scope["method"] == "POST":
            body, receive = await read_body(receive)
            problem = invalid_body(body)
            if problem is not None:
                status, code, text, req_id = problem
                await JSONResponse({"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": text}},
                                   status_code=status)(scope, receive, send)
                return
        sid = headers.get("mcp-session-id")
        if sid is not None:
            session = sessions.get(sid)
            if session is None:
                await JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": -32600,
                                    "message": "Session not found"}}, status_code=404)(scope, receive, send)
                return
            await session.transport.handle_request(scope, receive, send)
            if scope["method"] == "POST":  # its response stream has ended: answered, or the agent went away
                session.request_stream_closed(body)
            if session.transport.is_terminated:
                sessions.pop(sid, None)
            return
        session = HttpSession(svc, cfg, security)
        sessions[session.id] = session

        def done(task: asyncio.Task, sid: str = session.id) -> None:
            sessions.pop(sid, None)

        session.task = asyncio.create_task(session.run(), name=f"http-session-{session.id}")
        session.task.add_done_callback(done)
        await session.ready.wait()
        if session.failed is not None:
            await JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": -32603,
                                "message": f"Cordum sidecar: {session.failed}"}}, status_code=502)(scope, receive, send)
            return
        await session.transport.handle_request(scope, receive, send)

    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    log.info("sidecar listening", extra={"url": f"http://{host}:{port}{path}", "sidecar_id": svc.enforcer.sidecar_id})
    try:
        await server.serve()
    finally:
        for session in list(sessions.values()):
            with contextlib.suppress(Exception):
                await session.transport.terminate()
            if session.task:
                session.task.cancel()
                with contextlib.suppress(BaseException):
                    await session.task
        await svc.close()
    return 0
