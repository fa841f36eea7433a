"""Agent hooks: the same policy for the agent's built-in tools (shell, file edits, reads) as for MCP calls.

Claude Code `PreToolUse` (stdin):
    {"session_id", "transcript_path", "cwd", "hook_event_name": "PreToolUse", "tool_name": "Bash" | "Edit" |
     "Write" | "Read" | "mcp__<server>__<tool>", "tool_input": {...}, "tool_use_id"}
answer (stdout, exit 0):
    {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow|deny|ask",
                            "permissionDecisionReason": "..."}}

Cursor hooks (stdin; `hook_event_name` says which):
    beforeShellExecution {"command", "cwd"}; beforeMCPExecution {"tool_name", "tool_input", "command"|"url"};
    beforeReadFile {"file_path", "content"}; common: "conversation_id", "generation_id", "workspace_roots"
answer: {"permission": "allow|deny|ask", "user_message": "...", "agent_message": "..."}
(beforeReadFile takes allow/deny only, so `ask` becomes `deny` there.)

Built-in tools are evaluated as server `claude-code` (hook.server in sidecar.yaml; the policy template's tool
map uses that name) with the agent's tool name (`Bash`, `Edit`, `Write`, `Read`, ...) and its input as
arguments; Cursor's shell commands and file reads are mapped to `Bash {command, cwd}` and `Read {file_path}`
under the same server name, so one tool map governs both agents. MCP tools keep their
server and tool names. Every event writes one evidence record to the spool, exactly like the proxy.
A malformed event, or any internal error, is answered with deny (fail closed).

Limits: when the policy in force has `limits:`, the session's counters (keyed by the agent's session or
conversation id) are loaded from the spool's `hook_sessions` table, `LimitsTracker.check` decides and counts
the call, and the counters are stored again, all in one spool write transaction with the evidence record
(`Spool.hook_session`), so parallel hook processes of one session are counted one after another. The counters
carry over when the policy version changes (a new bundle or an edited local policy): a session's limits
bound the session, so a policy update does not hand every running session a fresh budget (the proxy does the
same in memory: `LimitsTracker.carry_over`).

Session data-flow labels (`labels:` and rules with `match.after`) persist the same way: each hook process loads
the session's labels from the same `hook_sessions` row, decides, and stores the labels a call it did not deny
has set (the hook cannot see whether the agent then ran the call, so it assumes it did).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cordum.sidecar.approvals import (
    ALLOWED_ON_TIMEOUT,
    ALLOWED_ON_TIMEOUT_COMMENT,
    SpoolSessionGrants,
    allows_on_timeout,
    approval_request_payload,
    policy_timeout_seconds,
)
from cordum.sidecar.config import SidecarConfig, guess_server_name

log = logging.getLogger("cordum.sidecar.hook")


@dataclass
class HookCall:
    event: str
    server: str
    tool: str
    arguments: dict[str, Any]
    session_id: str
    root: str | None
    tool_use_id: str | None = None
    response: Any = None  # post-tool events: what the tool returned (or the error)

    @property
    def key(self) -> str:
        """Pairs a PreToolUse decision with the PostToolUse event of the same call: the agent's tool_use_id,
        else the session, tool and arguments digest."""
        if self.tool_use_id:
            return f"{self.session_id}|{self.tool_use_id}"
        from cordum.policy import args_digest

        return f"{self.session_id}|{self.server}|{self.tool}|{args_digest(self.arguments)}"


POST_TOOL_EVENTS = ("PostToolUse", "PostToolUseFailure", "afterShellExecution", "afterMCPExecution")
# Cursor lets no hook gate a file edit; afterFileEdit reports one that happened, recorded as a shadow decision.
CURSOR_EDIT_EVENT = "afterFileEdit"


def _session(value: Any) -> str:
    return f"sess_{value}" if value else "sess_hook"


def parse_claude_event(event: dict[str, Any], *, builtin_server: str) -> HookCall | None:
    """PreToolUse (decided) and PostToolUse/PostToolUseFailure (outcome recorded); None for other events
    (they are answered with an empty object)."""
    name = event.get("hook_event_name", "PreToolUse")
    if name != "PreToolUse" and name not in POST_TOOL_EVENTS:
        return None
    tool_name = event.get("tool_name")
    if not isinstance(tool_name, str) or not tool_name:
        raise ValueError(f"{name} event without tool_name")
    args = event.get("tool_input") or {}
    if not isinstance(args, dict):
        raise ValueError("tool_input must be an object")
    server, tool = builtin_server, tool_name
    if tool_name.startswith("mcp__"):  # mcp__<server as the client names it>__<tool (may contain "__")>
        parts = tool_name.split("__", 2)
        if len(parts) == 3 and parts[1] and parts[2]:
            server, tool = parts[1], parts[2]
    tool_use_id = event.get("tool_use_id")
    response = event.get("error") if name == "PostToolUseFailure" else event.get("tool_response")
    return HookCall(name, server, tool, args, _session(event.get("session_id")), event.get("cwd"),
                    tool_use_id=str(tool_use_id) if tool_use_id else None, response=response)


def _cursor_call_id(event: dict[str, Any], tool: str, subject: Any) -> str:
    """Pairs a Cursor before-event with its after-event: Cursor gives no call id, but both carry the turn's
    generation_id and the same command or MCP tool and input."""
    from cordum.policy import args_digest

    return f"{event.get('generation_id') or ''}|{tool}|{args_digest({'subject': subject})}"


def _cursor_mcp_input(event: dict[str, Any]) -> dict[str, Any]:
    args = event.get("tool_input") or {}
    if isinstance(args, str):
        args = orjson.loads(args) if args.strip() else {}
    if not isinstance(args, dict):
        raise ValueError("tool_input must be an object")
    return args


def parse_cursor_event(event: dict[str, Any], *, builtin_server: str) -> HookCall | None:  # noqa: C901 - one branch per Cursor event
    name = event.get("hook_event_name")
    roots = event.get("workspace_roots") or []
    root = roots[0] if roots and isinstance(roots[0], str) else None
    session = _session(event.get("conversation_id"))
    if name in ("beforeShellExecution", "afterShellExecution"):
        command = event.get("command")
        if not isinstance(command, str):
            raise ValueError(f"{name} event without command")
        args = {"command": command}
        if event.get("cwd"):
            args["cwd"] = event["cwd"]
        return HookCall(name, builtin_server, "Bash", args, session, event.get("cwd") or root,
                        tool_use_id=_cursor_call_id(event, "Bash", command),
                        response={"output": event.get("output")} if name == "afterShellExecution" else None)
    if name == CURSOR_EDIT_EVENT:
        path = event.get("file_path")
        if not isinstance(path, str):
            raise ValueError("afterFileEdit event without file_path")
        edits = event.get("edits") if isinstance(event.get("edits"), list) else []
        return HookCall(name, builtin_server, "Edit", {"file_path": path, "edits": edits}, session, root)
    if name == "beforeReadFile":
        path = event.get("file_path")
        if not isinstance(path, str):
            raise ValueError("beforeReadFile event without file_path")
        return HookCall(name, builtin_server, "Read", {"file_path": path}, session, root)
    if name in ("beforeMCPExecution", "afterMCPExecution"):
        tool = event.get("tool_name")
        if not isinstance(tool, str) or not tool:
            raise ValueError(f"{name} event without tool_name")
        args = _cursor_mcp_input(event)
        server = event.get("server") or event.get("server_name") or cursor_server_key(event, roots)
        if not server and event.get("command"):
            server = guess_server_name(str(event["command"]).split())
        if not server and event.get("url"):
            from urllib.parse import urlparse

            server = urlparse(str(event["url"])).hostname or "remote"
        response = event.get("result_json") if name == "afterMCPExecution" else None
        if isinstance(response, str):
            try:
                response = orjson.loads(response)
            except orjson.JSONDecodeError:
                response = {"text": response}
        return HookCall(name, str(server or "mcp"), tool, args, session, root,
                        tool_use_id=_cursor_call_id(event, tool, args), response=response)
    return None


def cursor_server_key(event: dict[str, Any], roots: list[Any]) -> str | None:
    """The key the user gave the server in Cursor's mcp.json (project, then ~/.cursor): Cursor's event only
    carries the server's `url` or `command`, and policies name servers by their key, not by a host name."""
    url, command = event.get("url"), event.get("command")
    files = [Path(r) / ".cursor" / "mcp.json" for r in roots if isinstance(r, str)]
    files.append(Path.home() / ".cursor" / "mcp.json")
    for path in files:
        try:
            servers = json.loads(path.read_text()).get("mcpServers") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for key, entry in servers.items() if isinstance(servers, dict) else []:
            if not isinstance(entry, dict):
                continue
            if url and entry.get("url") == url:
                return str(key)
            launched = " ".join([str(entry.get("command") or ""), *map(str, entry.get("args") or [])]).strip()
            if command and launched and launched == str(command).strip():
                return str(key)
    return None


def claude_answer(decision: str, reason: str) -> dict[str, Any]:
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": decision,
                                   "permissionDecisionReason": reason}}


def cursor_answer(event_name: str, decision: str, reason: str) -> dict[str, Any]:
    if event_name == "beforeReadFile":
        return {"permission": "deny" if decision == "ask" else decision}
    out: dict[str, Any] = {"permission": decision}
    if decision != "allow":
        out["user_message"] = reason
        out["agent_message"] = reason
    return out


async def decide_hook_event(cfg: SidecarConfig, event: Any, *, agent_format: str,
                            local_bundle: str | None) -> dict[str, Any]:
    """Decide one hook event (writes its evidence record) and return the answer object."""
    from cordum.sidecar.runtime import build_services

    fmt_cursor = agent_format == "cursor"
    event_name = event.get("hook_event_name", "") if isinstance(event, dict) else ""

    def answer(decision: str, reason: str) -> dict[str, Any]:
        return cursor_answer(event_name, decision, reason) if fmt_cursor else claude_answer(decision, reason)

    if not isinstance(event, dict):
        return answer("deny", "Cordum: the hook event is not a JSON object; denied (fail closed)")
    try:
        parse = parse_cursor_event if fmt_cursor else parse_claude_event
        call = parse(event, builtin_server=cfg.hook.server)
    except (ValueError, orjson.JSONDecodeError) as exc:
        if event_name in POST_TOOL_EVENTS:  # the call already ran: there is nothing to deny
            log.warning("malformed %s event ignored: %s", event_name, exc)
            return {}
        return answer("deny", f"Cordum: malformed hook event ({exc}); denied (fail closed)")
    if call is None:
        return {} if not fmt_cursor else {"permission": "allow"} if event_name.startswith("before") else {}
    if call.event in POST_TOOL_EVENTS:
        record_post_tool_outcome(cfg, call)
        return {}
    if call.event == CURSOR_EDIT_EVENT:
        await record_cursor_edit(cfg, call, local_bundle=local_bundle)
        return {}

    sidecar = _sidecar_in_front(cfg, call)
    if sidecar:  # one gate per call: the sidecar decides, holds and records it
        return answer("allow", f"Cordum: {sidecar}")
    svc = await build_services(cfg, local_bundle=local_bundle, background=False, root=call.root)
    svc.enforcer.grants = SpoolSessionGrants(svc.spool)  # session answers outlive this one-call process
    try:
        verdict = decide_counted(svc, call)
        if verdict.unmapped:
            # The terminal's answer never comes back to a hook: the hand-off is the outcome on record, and if the
            # person lets the call run its PostToolUse appends `executed`.
            svc.enforcer.record_outcome(verdict, "unknown", comment=ASKED_UNMAPPED, in_decision=False)
            result = answer("ask", f"Cordum: {verdict.reason}")
        elif verdict.decision == "allow":
            result = answer("allow", f"Allowed by Cordum policy rule {verdict.rule or 'defaults.decision'}: "
                                     f"{verdict.reason} (policy {verdict.policy_version})")
        elif verdict.decision == "deny":
            result = answer("deny", verdict.deny_text())
        elif svc.enforcer.pass_by_grant(verdict):
            result = answer("allow", f"Cordum: {verdict.grant.comment()}. Policy rule {verdict.rule or 'defaults.decision'}: "
                                     f"{verdict.reason} (policy {verdict.policy_version})")
        else:
            result = await _approve(svc, verdict, call, answer)
        reported = not fmt_cursor or call.event in ("beforeShellExecution", "beforeMCPExecution")
        if reported and _permission(result) in ("allow", "ask"):
            svc.spool.hook_call_open(call.key, verdict.decision_id)  # its post-tool event records the outcome
        if svc.uploader is not None:  # best effort: a running sidecar sharing the spool uploads the rest
            await svc.uploader.drain(deadline=time.monotonic() + 1.5)
        return result
    finally:
        await svc.close(drain_seconds=0)


def _sidecar_in_front(cfg: SidecarConfig, call: HookCall) -> str | None:
    """Why an MCP call is left to the Cordum sidecar that fronts its server (None: the hook decides it)."""
    if call.server == cfg.hook.server:
        return None
    from cordum.sidecar.install import sidecar_fronted_servers

    if call.server in cfg.hook.sidecar_servers or call.server in sidecar_fronted_servers(call.root):
        return f"MCP server {call.server} runs behind the Cordum sidecar, which decides and records this call"
    return None


def decide_counted(svc, call: HookCall):
    """Decide the call, with the session's limit counters and data-flow labels kept in the spool across hook
    processes (one stored object: the limit counters plus `flow_labels`)."""
    primary = svc.enforcer.primary
    tracker = primary.limits if primary is not None else None
    limited = tracker is not None and tracker.has_limits
    flows = primary.flows if primary is not None else None
    if not limited and flows is None:
        return svc.enforcer.decide(server=call.server, tool=call.tool, arguments=call.arguments,
                                   session_id=call.session_id, root=call.root, ask_unmapped=True)
    # The transaction ends before any approval wait, so other hook processes are held for one decision only.
    with svc.spool.hook_session(call.session_id, policy_version=primary.version) as session:
        stored = session.counters or {}
        if limited and "started" in stored:
            tracker.import_session(call.session_id, stored)
        if flows is not None and stored.get("flow_labels"):
            flows.import_session(call.session_id, stored["flow_labels"])
        verdict = svc.enforcer.decide(server=call.server, tool=call.tool, arguments=call.arguments,
                                      session_id=call.session_id, root=call.root, ask_unmapped=True)
        if verdict.decision != "deny":
            # The hook answers before the agent runs the call and never sees it forwarded: a call it does not
            # deny (allowed, or asked about) sets its labels now, the stricter reading for what follows.
            svc.enforcer.call_forwarded(verdict)
        blob = (tracker.export_session(call.session_id, now=time.time()) if limited else None) or {}
        labels = flows.export_session(call.session_id) if flows is not None else None
        if labels:
            blob["flow_labels"] = labels
        session.counters = blob or None
    return verdict


def _permission(result: dict[str, Any]) -> str:
    return (result.get("hookSpecificOutput") or {}).get("permissionDecision") or result.get("permission") or ""


def record_post_tool_outcome(cfg: SidecarConfig, call: HookCall) -> str | None:
    """Claude Code reported how a call it was allowed to make went: spool its `executed` / `failed` outcome.

    Only the spool is opened (no policy, no control plane), so the post-tool hook stays cheap; the next
    decision's upload, or a running sidecar sharing the spool, sends it. Returns the decision id, or None
    for a call no Cordum hook decided (nothing is recorded)."""
    from cordum.sidecar.spool import Spool, outcome_record

    spool = Spool(cfg.spool_path, recover=False)
    try:
        decision_id = spool.hook_call_close(call.key)
        if decision_id is None:
            return None
        failed = call.event == "PostToolUseFailure" or (
            isinstance(call.response, dict) and (call.response.get("is_error") or call.response.get("isError")))
        error = ""
        if failed:
            error = call.response if isinstance(call.response, str) else orjson.dumps(call.response or "").decode()
        spool.add(outcome_record(decision_id, "failed" if failed else "executed", error=error))
        return decision_id
    finally:
        spool.close()


async def record_cursor_edit(cfg: SidecarConfig, call: HookCall, *, local_bundle: str | None) -> None:
    """An edit Cursor already made (no Cursor hook can stop one): the policy's decision on it is recorded in
    shadow mode with outcome `executed`, so the evidence shows what the policy would have said."""
    from cordum.sidecar.runtime import build_services

    svc = await build_services(cfg, local_bundle=local_bundle, background=False, root=call.root)
    try:
        verdict = svc.enforcer.decide(server=call.server, tool=call.tool, arguments=call.arguments,
                                      session_id=call.session_id, root=call.root,
                                      extra={"mode": "shadow", "outcome": None})  # it ran: not `blocked`
        svc.enforcer.record_outcome(verdict, "executed", comment="reported by Cursor after the edit (not gated)")
        if svc.uploader is not None:
            await svc.uploader.drain(deadline=time.monotonic() + 1.5)
    finally:
        await svc.close(drain_seconds=0)


ASKED_AT_TERMINAL = "no reviewer decided in time; handed to the person at the terminal (hook on_approval_timeout)"
ASKED_UNMAPPED = "unmapped tool: handed to the person at the terminal, whose answer a hook does not see"


def hook_fallback(setting: str, approval: dict) -> str:
    """ask | deny once no reviewer can decide in time. A hook cannot wait out a long approval timeout, so it hands
    the call to the person at the terminal, who is the agent's owner: only where the policy allows self-approval,
    unless the sidecar's config says otherwise."""
    if setting == "policy":
        return "ask" if approval.get("allow_self_approval") else "deny"
    return setting


async def _approve(svc, verdict, call: HookCall, answer) -> dict[str, Any]:
    cfg = svc.cfg
    approval = verdict.approval or {}
    fallback = hook_fallback(cfg.hook.on_approval_timeout, approval)
    head = f"Cordum policy rule {verdict.rule or 'defaults.decision'} requires approval: {verdict.reason}"
    if svc.approvals is None:
        if fallback == "deny":
            svc.enforcer.record_outcome(verdict, "denied", comment="offline: no control plane to ask")
        else:
            svc.enforcer.record_outcome(verdict, "timed_out", error="offline: no control plane to ask",
                                        comment=ASKED_AT_TERMINAL, in_decision=False)  # keeps the comment
        return answer(fallback, f"{head} (policy {verdict.policy_version}); no control plane to ask, "
                                f"so {'asking you' if fallback == 'ask' else 'denied'}")
    payload = approval_request_payload(verdict.record, approval, tool=call.tool, arguments=call.arguments,
                                       root=call.root, compiled=svc.enforcer.primary.compiled if svc.enforcer.primary else None)
    wait = svc.approvals.wait_seconds(min(policy_timeout_seconds(approval), cfg.hook.approval_wait_seconds))
    result = await svc.approvals.request_and_wait(payload, timeout_seconds=wait)
    if result.approved:
        svc.enforcer.record_outcome(verdict, "approved", reviewer=result.reviewer, comment=result.comment)
        scope = " for this session" if svc.enforcer.learn_grant(verdict, result, call.session_id) else ""
        return answer("allow", f"Approved{scope} by {result.reviewer or 'a reviewer'}. {head}")
    if allows_on_timeout(result, approval, waited_seconds=wait):
        svc.enforcer.record_outcome(verdict, ALLOWED_ON_TIMEOUT, error=result.detail,
                                    comment=ALLOWED_ON_TIMEOUT_COMMENT)
        return answer("allow", f"No reviewer decided within the approval timeout; allowed by the policy's "
                               f"on_timeout: allow. {head} (policy {verdict.policy_version})")
    if result.outcome == "timed_out" or result.outcome == "error":
        svc.enforcer.record_outcome(verdict, "timed_out", error=result.detail,
                                    comment=ASKED_AT_TERMINAL if fallback == "ask" else "", in_decision=fallback != "ask")
        return answer(fallback, result.refusal_text(rule=verdict.rule, reason=verdict.reason,
                                                    policy_version=verdict.policy_version)
                      if fallback == "deny" else f"{head}; no reviewer answered in time, asking you instead")
    svc.enforcer.record_outcome(verdict, "denied", reviewer=result.reviewer, comment=result.comment)
    return answer("deny", result.refusal_text(rule=verdict.rule, reason=verdict.reason,
                                              policy_version=verdict.policy_version))


def run_hook(cfg: SidecarConfig, *, local_bundle: str | None, agent_format: str) -> int:
    """Read one event from stdin, write one answer to stdout, exit 0 (the answer carries the decision)."""
    raw = sys.stdin.buffer.read()
    try:
        event = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        event = None
    try:
        result = asyncio.run(decide_hook_event(cfg, event, agent_format=agent_format, local_bundle=local_bundle))
    except Exception as exc:  # fail closed, with the reason the agent can show
        if isinstance(event, dict) and event.get("hook_event_name") in POST_TOOL_EVENTS:
            log.exception("recording a call's outcome failed")  # the call already ran: nothing to deny
            result = {}
        else:
            log.exception("hook failed; denying")
            reason = f"Cordum hook failed ({type(exc).__name__}: {exc}); denied (fail closed)"
            result = (cursor_answer((event or {}).get("hook_event_name", "") if isinstance(event, dict) else "", "deny",
                                    reason) if agent_format == "cursor" else claude_answer("deny", reason))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    sys.stdout.flush()
    return 0
