"""Byte-level message transports: each moves whole JSON-RPC messages (one JSON document each).

- `StdioUpstream`: spawns the real MCP server and exchanges newline-delimited JSON over its pipes.
- `HttpUpstream`: an MCP client over streamable HTTP or HTTP+SSE, using the mcp SDK's transports.
- `StdioAgentSide`: the sidecar's own stdin/stdout, where the agent (Claude Code, Cursor) talks to it.

Messages are bytes on the stdio paths (no re-serialisation: a message the sidecar does not intercept goes out
byte for byte as it came in) and are converted to/from the SDK's `SessionMessage` only on the HTTP paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import orjson

from cordum.sidecar.config import UpstreamConfig

log = logging.getLogger("cordum.sidecar.transport")

# Largest single message accepted on a pipe; CORDUM_MAX_MESSAGE_BYTES lowers it (tests, small machines).
LINE_LIMIT = int(os.environ.get("CORDUM_MAX_MESSAGE_BYTES") or 64 * 1024 * 1024)
OnMessage = Callable[[Any, bytes], None]

# Variables the sidecar itself needs that an upstream server has no business seeing.
_PRIVATE_ENV = ("CORDUM_AGENT_TOKEN",)


class StdioUpstream:
    kind = "stdio"

    def __init__(self, cfg: UpstreamConfig):
        assert cfg.command
        self.name = cfg.name
        self.cfg = cfg
        self.proc: asyncio.subprocess.Process | None = None
        self.closed = asyncio.Event()
        self._reader: asyncio.Task | None = None

    async def start(self, on_message: OnMessage) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        env.update(self.cfg.env)
        self.proc = await asyncio.create_subprocess_exec(
            *self.cfg.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=None, cwd=self.cfg.cwd, env=env, limit=LINE_LIMIT, start_new_session=True,
        )
        log.info("upstream started", extra={"upstream": self.name, "pid": self.proc.pid,
                                            "command": self.cfg.command})
        self._reader = asyncio.create_task(self._read_loop(on_message), name=f"upstream-{self.name}")

    async def _read_loop(self, on_message: OnMessage) -> None:
        assert self.proc and self.proc.stdout
        stdout = self.proc.stdout
        try:
            while True:
                try:
                    line = await stdout.readline()
                except ValueError:  # a line longer than LINE_LIMIT
                    log.error("upstream message too large; dropped", extra={"upstream": self.name})
                    continue
                if not line:
                    break
                line = line.strip()
                if line:
                    try:
                        on_message(self, line)
                    except Exception:
                        log.exception("handling an upstream message failed", extra={"upstream": self.name})
        finally:
            self.closed.set()
            log.info("upstream closed its stdout", extra={"upstream": self.name})

    def send(self, data: bytes) -> None:
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            raise ConnectionError(f"upstream {self.name} is not running")
        proc.stdin.write(data + b"\n")

    async def close(self) -> None:
        """Close stdin, give the server 2 s to exit, then SIGTERM and SIGKILL its process group."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin and not proc.stdin.is_closing():
            with contextlib.suppress(Exception):
                proc.stdin.close()
        for sig, grace in ((None, 2.0), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), timeout=grace)
                break
            except TimeoutError:
                continue
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self.closed.set()


class HttpUpstream:
    """An upstream MCP server over streamable HTTP or the older HTTP+SSE transport (the mcp SDK's clients)."""

    kind = "http"

    def __init__(self, cfg: UpstreamConfig):
        assert cfg.url
        self.name = cfg.name
        self.cfg = cfg
        self.closed = asyncio.Event()
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._error: BaseException | None = None

    async def start(self, on_message: OnMessage) -> None:
        self._task = asyncio.create_task(self._run(on_message), name=f"upstream-{self.name}")
        await self._ready.wait()
        if self._error is not None:
            raise ConnectionError(f"upstream {self.name}: {self._error}")

    async def _run(self, on_message: OnMessage) -> None:
        import anyio
        import httpx2
        import mcp_types
        from mcp.client.sse import sse_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared.message import SessionMessage

        try:
            client = httpx2.AsyncClient(headers=self.cfg.headers or None,
                                        timeout=httpx2.Timeout(30.0, read=300.0))
            if self.cfg.transport == "sse":
                connection = sse_client(self.cfg.url, headers=self.cfg.headers or None, timeout=30.0)
            else:
                connection = streamable_http_client(self.cfg.url, http_client=client)
            async with client, connection as (read, write):
                self._ready.set()

                async def pump_out() -> None:
                    while True:
                        data = await self._outbox.get()
                        if data is None:
                            return
                        try:
                            msg = mcp_types.jsonrpc_message_adapter.validate_json(data, by_name=False)
                        except ValueError:
                            log.warning("agent message is not valid JSON-RPC; dropped", extra={"upstream": self.name})
                            continue
                        await write.send(SessionMessage(msg))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(pump_out)
                    async for item in read:
                        if isinstance(item, Exception):
                            log.warning("upstream transport error", extra={"upstream": self.name, "error": str(item)})
                            continue
                        data = item.message.model_dump_json(by_alias=True, exclude_unset=True).encode()
                        try:
                            on_message(self, data)
                        except Exception:
                            log.exception("handling an upstream message failed", extra={"upstream": self.name})
                    tg.cancel_scope.cancel()
        except BaseException as exc:  # noqa: BLE001 - reported to start() or logged
            self._error = exc
            if not isinstance(exc, asyncio.CancelledError):
                log.error("upstream connection failed", extra={"upstream": self.name, "error": repr(exc)})
        finally:
            self._ready.set()
            self.closed.set()

    def send(self, data: bytes) -> None:
        if self.closed.is_set():
            raise ConnectionError(f"upstream {self.name} is closed")
        self._outbox.put_nowait(data)

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.closed.set()


def make_upstream(cfg: UpstreamConfig):
    return StdioUpstream(cfg) if cfg.command else HttpUpstream(cfg)


class _WriteProtocol(asyncio.Protocol):
    def connection_lost(self, exc: Exception | None) -> None:
        pass


class StdioAgentSide:
    """The agent's end: newline-delimited JSON on the sidecar's own stdin and stdout."""

    def __init__(self) -> None:
        self._out: asyncio.WriteTransport | None = None
        self._out_fallback = None

    async def open(self) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
        except (ValueError, OSError):  # stdin is a regular file or similar: read it in a thread
            asyncio.create_task(_feed_from_thread(reader))
        try:
            self._out, _ = await loop.connect_write_pipe(_WriteProtocol, sys.stdout.buffer)
        except (ValueError, OSError):
            self._out_fallback = sys.stdout.buffer
        return reader

    def send(self, data: bytes) -> None:
        if self._out is not None:
            if not self._out.is_closing():
                self._out.write(data + b"\n")
        else:
            self._out_fallback.write(data + b"\n")
            self._out_fallback.flush()

    async def flush(self) -> None:
        out = self._out
        if out is None:
            return
        for _ in range(200):
            if out.is_closing() or out.get_write_buffer_size() == 0:
                return
            await asyncio.sleep(0.005)


async def _feed_from_thread(reader: asyncio.StreamReader) -> None:
    loop = asyncio.get_running_loop()
    while True:
        chunk = await loop.run_in_executor(None, sys.stdin.buffer.read1, 65536)
        if not chunk:
            reader.feed_eof()
            return
        reader.feed_data(chunk)


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)
