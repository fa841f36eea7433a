"""The relay: JSON-RPC messages pass between the agent and the upstream MCP servers unchanged, except
`tools/call`, which is decided locally first, and, when several upstreams are fronted, the messages that
must be fanned out and merged (initialize, tools/list, resources/prompts lists) or routed by name.

With one upstream the sidecar is byte-for-byte transparent for everything but denied or held calls: the
raw line the agent wrote is what the upstream reads, and vice versa. With several, tool (and prompt) names
become `<server>__<name>` and ids of server-initiated requests are rewritten so answers find their way back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from cordum.policy.toollock import DRIFT_RULE
from cordum.sidecar import __version__
from cordum.sidecar.approvals import (
    ALLOWED_ON_TIMEOUT,
    ALLOWED_ON_TIMEOUT_COMMENT,
    ApprovalClient,
    ApprovalResult,
    allows_on_timeout,
    approval_request_payload,
    policy_timeout_seconds,
)
from cordum.sidecar.enforcer import Enforcer, Verdict

log = logging.getLogger("cordum.sidecar.proxy")

SEP = "__"
_FANOUT_LISTS = {"tools/list": "tools", "resources/list": "resources",
                 "resources/templates/list": "resourceTemplates", "prompts/list": "prompts"}


def _jsonrpc_result(req_id: Any, result: dict[str, Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": req_id, "result": result})


def jsonrpc_error(req_id: Any, code: int, message: str) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}})


def tool_error_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def valid_id(value: Any) -> bool:
    """JSON-RPC ids MCP accepts: a string or an integer (never null, a bool, a float, an object or an array)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def invalid_message(msg: Any) -> tuple[int, str] | None:
    """Why `msg` is not a JSON-RPC 2.0 message MCP allows, as (error code, message naming the field), or None."""
    if not isinstance(msg, dict):
        return -32600, "Invalid Request: a message must be a JSON object"
    if msg.get("jsonrpc") != "2.0":
        return -32600, 'Invalid Request: "jsonrpc" must be "2.0"'
    if "id" in msg and not valid_id(msg["id"]):
        return -32600, 'Invalid Request: "id" must be a string or an integer'
    if "method" not in msg:  # an answer to a request an upstream made
        if "id" not in msg or ("result" in msg) == ("error" in msg):
            return -32600, 'Invalid Request: a response needs "id" and exactly one of "result" or "error"'
        return None
    method = msg["method"]
    if not isinstance(method, str) or not method:
        return -32600, 'Invalid Request: "method" must be a non-empty string'
    if "params" in msg and not isinstance(msg["params"], dict):
        return -32602, 'Invalid params: "params" must be an object'
    if "id" not in msg and not method.startswith("notifications/"):
        return -32600, f'Invalid Request: {method} is a request and needs an "id"'
    if method == "tools/call":
        params = msg.get("params") or {}
        if not isinstance(params.get("name"), str):
            return -32602, 'Invalid params: tools/call needs "params.name" (a string)'
        for key in ("arguments", "task", "_meta"):
            if params.get(key) is not None and not isinstance(params[key], dict):
                return -32602, f'Invalid params: "params.{key}" must be an object'
    return None


@dataclass
class _Pending:
    verdict: Verdict
    upstream: Any


@dataclass
class _FanOut:
    agent_id: Any
    method: str
    waiting: set[str]
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)


class Relay:
    """One agent session in front of one or more upstreams."""

    def __init__(self, *, upstreams: list[Any], enforcer: Enforcer, send_agent: Callable[[bytes], None],
                 session_id: str, approvals: ApprovalClient | None = None):
        self.upstreams = {u.name: u for u in upstreams}
        self.first = upstreams[0]
        self.multi = len(upstreams) > 1
        self.enforcer = enforcer
        self.send_agent = send_agent
        self.session_id = session_id
        self.approvals = approvals
        self._calls: dict[tuple[str, Any], _Pending] = {}
        self._held: dict[Any, asyncio.Task] = {}  # tools/call waiting for approval, by agent request id
        self._withdrawn: dict[Any, str] = {}  # held calls withdrawn by the transport, and why
        self._routes: dict[Any, str] = {}  # multi: agent request id -> upstream name
        self._fanouts: dict[str, _FanOut] = {}
        self._server_reqs: dict[str, tuple[str, Any]] = {}  # multi: rewritten id -> (upstream, original id)
        self._uri_owner: dict[str, str] = {}
        self._seq = 0
        self._denied_tasks: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}  # task id -> (task, result)
        self._listings: dict[Any, bool] = {}  # single upstream: tools/list request id -> asked from the start
        self._listed = False  # the agent has been shown a tools/list answer
        enforcer.relays.add(self)

    # -- agent -> upstream ----------------------------------------------------------------------

    def on_agent_line(self, line: bytes) -> None:
        try:
            msg = orjson.loads(line)  # orjson refuses nesting deeper than 1024: a parse error, not a crash
        except orjson.JSONDecodeError:
            self.send_agent(jsonrpc_error(None, -32700, "Parse error"))
            return
        if isinstance(msg, list):  # a JSON-RPC batch (older protocol versions): handle each element
            if not msg:
                self.send_agent(jsonrpc_error(None, -32600, "Invalid Request: empty batch"))
            for item in msg:
                self._on_agent_item(item, None)
            return
        self._on_agent_item(msg, line)

    def _on_agent_item(self, msg: Any, raw: bytes | None) -> None:
        """Refuse what is not a JSON-RPC message, then relay; a failure here answers the one request, so a
        malformed message can never end the session (or the sidecar) for the messages after it."""
        problem = invalid_message(msg)
        if problem is not None:
            code, text = problem
            req_id = msg.get("id") if isinstance(msg, dict) and valid_id(msg.get("id")) else None
            log.warning("invalid message from the agent", extra={"reason": text})
            self.send_agent(jsonrpc_error(req_id, code, text))
            return
        try:
            self._on_agent_msg(msg, raw)
        except Exception:
            log.exception("relaying an agent message failed", extra={"method": msg.get("method")})
            if msg.get("method") and "id" in msg:
                self.send_agent(jsonrpc_error(msg["id"], -32603, "Cordum sidecar: internal error"))

    def _on_agent_msg(self, msg: dict[str, Any], raw: bytes | None) -> None:
        method = msg.get("method")
        if method is None:  # the agent answers a request an upstream made (sampling, roots, elicitation)
            self._route_agent_response(msg, raw)
            return
        if "id" in msg:
            if method == "tools/call":
                self._on_tools_call(msg, raw)
            elif method in ("tasks/get", "tasks/result", "tasks/cancel") and self._answer_denied_task(msg):
                return
            elif not self.multi:
                if method == "tools/list":  # its answer is compared with tools.lock
                    self._listings[msg["id"]] = not (msg.get("params") or {}).get("cursor")
                self._forward(self.first, msg, raw)
            else:
                self._route_request(msg, raw)
            return
        # a notification
        if method == "notifications/cancelled":
            req_id = (msg.get("params") or {}).get("requestId")
            task = self._held.pop(req_id, None)
            if task is not None:
                task.cancel()
                return
        if not self.multi:
            self._forward(self.first, msg, raw)
        elif method == "notifications/cancelled":
            req_id = (msg.get("params") or {}).get("requestId")
            name = self._routes.get(req_id)
            for up in ([self.upstreams[name]] if name in self.upstreams else self.upstreams.values()):
                self._forward(up, msg, raw)
        else:
            for up in self.upstreams.values():
                self._forward(up, msg, raw)

    def _forward(self, upstream: Any, msg: dict[str, Any], raw: bytes | None) -> None:
        try:
            upstream.send(raw if raw is not None else orjson.dumps(msg))
        except ConnectionError as exc:
            if "id" in msg and msg.get("method"):
                self.send_agent(jsonrpc_error(msg["id"], -32603, f"Cordum sidecar: {exc}"))

    # -- tools/call: the enforcement point ------------------------------------------------------

    def _resolve_tool(self, name: str) -> tuple[Any, str] | None:
        if not self.multi:
            return self.first, name
        server, sep, tool = name.partition(SEP)
        if sep and server in self.upstreams:
            return self.upstreams[server], tool
        return None

    def _on_tools_call(self, msg: dict[str, Any], raw: bytes | None) -> None:
        req_id = msg["id"]
        params = msg.get("params") or {}
        name = params.get("name")
        if not isinstance(name, str):
            self.send_agent(jsonrpc_error(req_id, -32602, "tools/call needs params.name"))
            return
        resolved = self._resolve_tool(name)
        if resolved is None:
            self.send_agent(jsonrpc_error(req_id, -32602, f"Unknown tool: {name}"))
            return
        upstream, tool = resolved
        verdict = self.enforcer.decide(server=upstream.name, tool=tool, arguments=params.get("arguments"),
                                       session_id=self.session_id)
        if verdict.decision == "allow" or self.enforcer.pass_by_grant(verdict):
            self._send_call(upstream, tool, msg, raw, verdict)
        elif verdict.decision == "deny":
            self._refuse(msg, verdict.deny_text())
        else:
            task = asyncio.get_running_loop().create_task(self._hold_for_approval(upstream, tool, msg, raw, verdict))
            self._held[req_id] = task

    def _refuse(self, msg: dict[str, Any], text: str) -> None:
        """Answer a refused tools/call in the shape its caller asked for: a tool error, or a failed task."""
        result = tool_error_result(text)
        task = (msg.get("params") or {}).get("task")
        if isinstance(task, dict):
            result = self._denied_task(task, result)
        self.send_agent(_jsonrpc_result(msg["id"], result))

    def _denied_task(self, task: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        """A task-augmented call (MCP 2025-11-25) expects a CreateTaskResult, then polls tasks/get and reads
        tasks/result: a denied one becomes a task that has already failed, whose payload is the deny result."""
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        info = {"taskId": f"cordum-denied-{uuid.uuid4().hex}", "status": "failed",
                "statusMessage": result["content"][0]["text"], "createdAt": now, "lastUpdatedAt": now,
                "ttl": task.get("ttl") if isinstance(task.get("ttl"), int) else None}
        self._denied_tasks[info["taskId"]] = (info, result)
        return {"task": info}

    def _answer_denied_task(self, msg: dict[str, Any]) -> bool:
        """Answer tasks/get, tasks/result and tasks/cancel for a task the sidecar itself failed (a denied call)."""
        task_id = (msg.get("params") or {}).get("taskId")
        entry = self._denied_tasks.get(task_id) if isinstance(task_id, str) else None
        if entry is None:
            return False
        info, result = entry
        if msg["method"] == "tasks/get":
            self.send_agent(_jsonrpc_result(msg["id"], info))
        elif msg["method"] == "tasks/result":
            meta = {"io.modelcontextprotocol/related-task": {"taskId": task_id}}
            self.send_agent(_jsonrpc_result(msg["id"], dict(result, _meta=meta)))
        else:
            self.send_agent(jsonrpc_error(msg["id"], -32602, f"Task {task_id} already failed: it cannot be cancelled"))
        return True

    def _send_call(self, upstream: Any, tool: str, msg: dict[str, Any], raw: bytes | None, verdict: Verdict) -> None:
        req_id = msg["id"]
        if self.multi or raw is None:
            params = dict(msg.get("params") or {}, name=tool)
            raw = orjson.dumps(dict(msg, params=params))
        self._calls[(upstream.name, req_id)] = _Pending(verdict, upstream)
        verdict.started = time.monotonic()
        self.enforcer.call_forwarded(verdict)  # the session labels it sets hold from now on
        try:
            upstream.send(raw)
        except ConnectionError as exc:
            self._calls.pop((upstream.name, req_id), None)
            self.enforcer.record_outcome(verdict, "failed", error=str(exc))
            self.send_agent(jsonrpc_error(req_id, -32603, f"Cordum sidecar: {exc}"))

    async def _hold_for_approval(self, upstream: Any, tool: str, msg: dict[str, Any], raw: bytes | None,
                                 verdict: Verdict) -> None:
        req_id = msg["id"]
        params = msg.get("params") or {}
        token = (params.get("_meta") or {}).get("progressToken")
        approval = verdict.approval or {}
        waited = 0.0
        try:
            if self.approvals is None:
                result = ApprovalResult("error", detail="no control plane configured to ask (offline mode)")
            else:
                count = 0

                def on_progress(waited: float, text: str) -> None:
                    nonlocal count
                    if token is None:
                        return
                    count += 1
                    self.send_agent(orjson.dumps({"jsonrpc": "2.0", "method": "notifications/progress",
                                                  "params": {"progressToken": token, "progress": count,
                                                             "message": text}}))

                payload = approval_request_payload(verdict.record, approval, tool=tool,
                                                   arguments=params.get("arguments") or {}, root=self.enforcer.root)
                drift = self.enforcer.pins.drift(upstream.name, tool) if verdict.rule == DRIFT_RULE else None
                if drift is not None:  # held because the tool drifted: the reviewer sees what changed
                    payload["diff"] = self.enforcer.mask(drift.diff_text())
                timeout = policy_timeout_seconds(approval)
                waited = self.approvals.wait_seconds(timeout)
                result = await self.approvals.request_and_wait(payload, timeout_seconds=timeout,
                                                               on_progress=on_progress)
        except asyncio.CancelledError:
            comment = self._withdrawn.pop(req_id, "the agent cancelled the call while it waited")
            self.enforcer.record_outcome(verdict, "cancelled", comment=comment, in_decision=False)
            return
        finally:
            self._held.pop(req_id, None)
        if result.approved:
            self.enforcer.record_outcome(verdict, "approved", reviewer=result.reviewer, comment=result.comment)
            self.enforcer.learn_grant(verdict, result, self.session_id)
            self._send_call(upstream, tool, msg, raw, verdict)
            return
        if allows_on_timeout(result, approval, waited_seconds=waited):
            log.warning("approval timed out; allowed by the policy's on_timeout: allow",
                        extra={"decision_id": verdict.decision_id, "approval_id": result.approval_id})
            self.enforcer.record_outcome(verdict, ALLOWED_ON_TIMEOUT, error=result.detail,
                                         comment=ALLOWED_ON_TIMEOUT_COMMENT)
            self._send_call(upstream, tool, msg, raw, verdict)
            return
        outcome = result.outcome if result.outcome in ("denied", "timed_out") else (
            "timed_out" if result.outcome == "expired" else "denied")
        self.enforcer.record_outcome(verdict, outcome, reviewer=result.reviewer, comment=result.comment,
                                     error=result.detail)
        text = result.refusal_text(rule=verdict.rule, reason=verdict.reason, policy_version=verdict.policy_version)
        self._refuse(msg, text)

    # -- multi-upstream routing -----------------------------------------------------------------

    def _next_id(self) -> str:
        self._seq += 1
        return f"cordum-{self._seq}"

    def _route_request(self, msg: dict[str, Any], raw: bytes | None) -> None:
        method = msg["method"]
        req_id = msg["id"]
        params = msg.get("params") or {}
        if method == "ping":
            self.send_agent(_jsonrpc_result(req_id, {}))
            return
        if method == "initialize" or method in _FANOUT_LISTS or method == "logging/setLevel":
            fan = _FanOut(agent_id=req_id, method=method, waiting=set(self.upstreams))
            for up in self.upstreams.values():
                internal = self._next_id()
                self._fanouts[internal] = fan
                self._forward(up, dict(msg, id=internal), None)
            return
        target = self.first
        out = msg
        if method == "prompts/get":
            server, sep, prompt = str(params.get("name", "")).partition(SEP)
            if sep and server in self.upstreams:
                target, out = self.upstreams[server], dict(msg, params=dict(params, name=prompt))
        elif method.startswith("resources/") and "uri" in params:
            target = self.upstreams.get(self._uri_owner.get(params["uri"], ""), self.first)
        elif method == "completion/complete":
            ref = params.get("ref") or {}
            if ref.get("type") == "ref/prompt":
                server, sep, prompt = str(ref.get("name", "")).partition(SEP)
                if sep and server in self.upstreams:
                    target = self.upstreams[server]
                    out = dict(msg, params=dict(params, ref=dict(ref, name=prompt)))
            elif "uri" in ref:
                target = self.upstreams.get(self._uri_owner.get(ref["uri"], ""), self.first)
        self._routes[req_id] = target.name
        self._forward(target, out, raw if out is msg else None)

    def _route_agent_response(self, msg: dict[str, Any], raw: bytes | None) -> None:
        if not self.multi:
            self._forward(self.first, msg, raw)
            return
        entry = self._server_reqs.pop(msg.get("id"), None) if isinstance(msg.get("id"), str) else None
        if entry is None:
            log.warning("agent answered an unknown request id; dropped", extra={"id": msg.get("id")})
            return
        name, original = entry
        self._forward(self.upstreams[name], dict(msg, id=original), None)

    def _finish_fanout(self, fan: _FanOut) -> None:
        if fan.method == "initialize":
            if not fan.results:
                err = next(iter(fan.errors.values()), {"code": -32603, "message": "no upstream initialized"})
                self.send_agent(orjson.dumps({"jsonrpc": "2.0", "id": fan.agent_id, "error": err}))
                return
            caps: dict[str, Any] = {}
            instructions = []
            protocol = None
            for name, res in fan.results.items():
                protocol = protocol or res.get("protocolVersion")
                for key, value in (res.get("capabilities") or {}).items():
                    if isinstance(value, dict) and isinstance(caps.get(key), dict):
                        caps[key] = {**caps[key], **value}
                    else:
                        caps.setdefault(key, value)
                if res.get("instructions"):
                    instructions.append(f"[{name}] {res['instructions']}")
            result = {"protocolVersion": protocol, "capabilities": caps,
                      "serverInfo": {"name": "cordum-sidecar", "version": __version__}}
            if instructions:
                result["instructions"] = "\n".join(instructions)
            self.send_agent(_jsonrpc_result(fan.agent_id, result))
            return
        if fan.method == "logging/setLevel":
            self.send_agent(_jsonrpc_result(fan.agent_id, {}))
            return
        key = _FANOUT_LISTS[fan.method]
        merged: list[Any] = []
        for name in self.upstreams:  # stable order: config order
            items = (fan.results.get(name) or {}).get(key) or []
            if key == "tools" and isinstance(items, list):
                cursor = bool((fan.results.get(name) or {}).get("nextCursor"))
                items = self._screen_tools(name, items, complete=not cursor)
            for item in items:
                item = dict(item)
                if key in ("tools", "prompts") and "name" in item:
                    item["name"] = f"{name}{SEP}{item['name']}"
                elif key == "resources" and "uri" in item:
                    self._uri_owner[item["uri"]] = name
                merged.append(item)
        self.send_agent(_jsonrpc_result(fan.agent_id, {key: merged}))

    # -- upstream -> agent ----------------------------------------------------------------------

    def on_upstream_line(self, upstream: Any, line: bytes) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("upstream sent invalid JSON; dropped", extra={"upstream": upstream.name})
            return
        if not isinstance(msg, dict):
            self.send_agent(line)
            return
        if "method" not in msg:  # a response
            req_id = msg.get("id")
            if self.multi and isinstance(req_id, str) and req_id in self._fanouts:
                fan = self._fanouts.pop(req_id)
                if "result" in msg:
                    fan.results[upstream.name] = msg["result"]
                else:
                    fan.errors[upstream.name] = msg.get("error")
                fan.waiting.discard(upstream.name)
                if not fan.waiting:
                    self._finish_fanout(fan)
                return
            if self._listings and req_id in self._listings:
                line = self._screened_listing(upstream, msg, line, from_start=self._listings.pop(req_id))
                self.send_agent(line)
                return
            pending = self._calls.pop((upstream.name, req_id), None)
            if self.multi:
                self._routes.pop(req_id, None)
            facts: dict[str, Any] = {}
            if pending is not None and isinstance(msg.get("result"), dict):
                screened, counts = self.enforcer.screen_result(msg["result"])
                if screened is not None:  # a secret in the result: the agent gets it masked (or withheld)
                    line = orjson.dumps(dict(msg, result=screened))
                    facts = {"masked": dict(counts), **({"withheld": True} if screened.get("isError") else {})}
            self.send_agent(line)  # the agent gets the answer first; bookkeeping after
            if pending is not None:
                self._record_call_result(pending, msg, facts=facts)
            return
        if self.multi and "id" in msg:  # a request from an upstream to the agent: make its id unique
            new_id = f"{upstream.name}{SEP}{self._next_id()}"
            self._server_reqs[new_id] = (upstream.name, msg["id"])
            self.send_agent(orjson.dumps(dict(msg, id=new_id)))
            return
        self.send_agent(line)

    def tools_changed(self) -> None:
        """A new tools.lock is in force: tell an agent that has listed tools to list them again."""
        if self._listed:
            self.send_agent(b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}')

    def _screen_tools(self, server: str, tools: list[Any], *, complete: bool) -> list[Any]:
        self._listed = True
        try:
            kept = self.enforcer.screen_tools(server, tools, complete=complete)
        except Exception:  # pinning must never break the listing; calls are still decided one by one
            log.exception("comparing tools/list with tools.lock failed", extra={"upstream": server})
            return tools
        return tools if kept is None else kept

    def _screened_listing(self, upstream: Any, msg: dict[str, Any], line: bytes, *, from_start: bool) -> bytes:
        """One upstream's tools/list answer, compared with tools.lock; re-encoded only when a tool is taken out."""
        result = msg.get("result")
        tools = result.get("tools") if isinstance(result, dict) else None
        if not isinstance(tools, list):
            return line
        complete = from_start and not result.get("nextCursor")
        kept = self._screen_tools(upstream.name, tools, complete=complete)
        if kept is tools:
            return line
        answer = dict(msg, result=dict(result, tools=kept))
        try:
            return orjson.dumps(answer)
        except TypeError:  # what orjson cannot encode (an integer past 64 bits in a schema): the standard library
            import json

            return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()

    def _record_call_result(self, pending: _Pending, msg: dict[str, Any], *, facts: dict[str, Any]) -> None:
        """The call's outcome as the upstream gave it; `facts`: the kinds and counts of secrets kept from the
        agent (never the values) and whether the whole result was withheld."""
        facts = facts or None
        if "error" in msg:
            err = msg.get("error") or {}
            self.enforcer.record_outcome(pending.verdict, "failed", error=str(err.get("message", err)))
            return
        result = msg.get("result") or {}
        if result.get("isError"):
            text = " ".join(c.get("text", "") for c in result.get("content") or [] if isinstance(c, dict))
            self.enforcer.record_outcome(pending.verdict, "failed", error=self.enforcer.mask(text)[:2000],
                                         facts=facts)
        else:
            self.enforcer.record_outcome(pending.verdict, "executed", facts=facts)

    def withdraw(self, req_id: Any, reason: str) -> bool:
        """Withdraw one call held for approval (its approval request is cancelled; recorded `cancelled` with
        `reason`). False when it is not held (already decided or never held)."""
        task = self._held.pop(req_id, None)
        if task is None:
            return False
        self._withdrawn[req_id] = reason
        task.cancel()
        return True

    async def cancel_held(self) -> None:
        """Shutdown: withdraw every approval still being waited for (recorded as cancelled)."""
        tasks = list(self._held.values())
        self._held.clear()  # taken, so `withdraw` or a notifications/cancelled never cancels a task twice
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass

    def abandon_calls(self) -> None:
        """Shutdown: record every forwarded call whose answer never came back as failed (result unknown)."""
        for key in list(self._calls):
            pending = self._calls.pop(key)
            self.enforcer.record_outcome(pending.verdict, "failed",
                                         error="the sidecar stopped before the upstream answered")

    def upstream_closed(self, upstream: Any) -> None:
        """Answer every call still waiting on a dead upstream, and record it as failed."""
        for key in [k for k in self._calls if k[0] == upstream.name]:
            pending = self._calls.pop(key)
            self.enforcer.record_outcome(pending.verdict, "failed", error="upstream server exited")
            self.send_agent(jsonrpc_error(key[1], -32603, f"Cordum sidecar: upstream {upstream.name} exited"))
