"""A scripted model behind the Anthropic Messages API, for running the real Claude Code headless in tests.

Claude Code is pointed at it with ANTHROPIC_BASE_URL. Each request of the main conversation (one that offers
tools and starts with the session's prompt) is answered, streamed as server-sent events like the real API, with
the next scripted turn: the tool calls of that turn (`tool_use` blocks), or a final text. Side requests (titles,
summaries, a fetch's digest, a web search, a subagent's own conversation) get a short text.
Every request is kept, so a test reads back the `tool_result` blocks Claude Code sent: what each call returned
to the model after the hooks, permissions and MCP servers had their say.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ToolUse:
    name: str
    input: dict[str, Any]
    id: str = ""


def _first_user_text(request: dict[str, Any]) -> str:
    messages = request.get("messages") or []
    content = messages[0].get("content") if messages and isinstance(messages[0], dict) else ""
    if isinstance(content, list):
        content = "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return str(content or "")


@dataclass
class ScriptedModel:
    """`turns`: each a list of ToolUse (one assistant message calling them) or a str (the final answer)."""

    turns: list[list[ToolUse] | str]
    requests: list[dict[str, Any]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self):
        self._lock = threading.Lock()
        self._turn = 0
        self._main_prompt: str | None = None
        for turn in self.turns:
            if not isinstance(turn, str):
                for call in turn:
                    call.id = call.id or f"toolu_{next(self._ids):04d}"
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def next_turn(self, request: dict[str, Any]) -> list[ToolUse] | str:
        with self._lock:
            self.requests.append(request)
            if not self._is_main(request):
                return "ok"
            turn = self.turns[self._turn] if self._turn < len(self.turns) else "done"
            self._turn += 1
            return turn

    def _is_main(self, request: dict[str, Any]) -> bool:
        """The main conversation offers tools and starts with the prompt the first such request started with;
        a subagent (Task), a web search or a fetch's summary starts a conversation of its own."""
        if not request.get("tools"):
            return False
        first = _first_user_text(request)
        if self._main_prompt is None:
            self._main_prompt = first
        return first == self._main_prompt

    def tool_results(self) -> dict[str, dict[str, Any]]:
        """tool_use id -> the tool_result block Claude Code sent back ({"content", "is_error"})."""
        out: dict[str, dict[str, Any]] = {}
        for request in self.requests:
            for message in request.get("messages") or []:
                if message.get("role") != "user" or not isinstance(message.get("content"), list):
                    continue
                for block in message["content"]:
                    if isinstance(block, dict) and block.get("type") == "tool_result":
                        content = block.get("content")
                        if isinstance(content, list):
                            content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
                        out[block["tool_use_id"]] = {"content": content or "", "is_error": bool(block.get("is_error"))}
        return out

    def _handler(self):
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                if "count_tokens" in self.path:
                    return self._json({"input_tokens": 100})
                turn = model.next_turn(body)
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                self._stream(body.get("model", "claude-scripted"), turn)

            def do_GET(self):
                self._json({"data": []}, status=404)

            def _json(self, obj, status=200):
                raw = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _event(self, name, data):
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

            def _stream(self, model_name, turn):
                self._event("message_start", {"type": "message_start", "message": {
                    "id": f"msg_{id(turn)}", "type": "message", "role": "assistant", "model": model_name,
                    "content": [], "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": 10, "output_tokens": 1}}})
                if isinstance(turn, str):
                    blocks = [("text", turn)]
                else:
                    blocks = [("tool_use", call) for call in turn]
                for index, (kind, item) in enumerate(blocks):
                    if kind == "text":
                        self._event("content_block_start", {"type": "content_block_start", "index": index,
                                                            "content_block": {"type": "text", "text": ""}})
                        self._event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                            "delta": {"type": "text_delta", "text": item}})
                    else:
                        self._event("content_block_start", {"type": "content_block_start", "index": index,
                                                            "content_block": {"type": "tool_use", "id": item.id,
                                                                              "name": item.name, "input": {}}})
                        self._event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                            "delta": {"type": "input_json_delta",
                                                                      "partial_json": json.dumps(item.input)}})
                    self._event("content_block_stop", {"type": "content_block_stop", "index": index})
                stop = "end_turn" if isinstance(turn, str) else "tool_use"
                self._event("message_delta", {"type": "message_delta",
                                              "delta": {"stop_reason": stop, "stop_sequence": None},
                                              "usage": {"output_tokens": 5}})
                self._event("message_stop", {"type": "message_stop"})

        return Handler
