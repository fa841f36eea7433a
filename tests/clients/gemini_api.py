"""A scripted Gemini API endpoint for running the real `gemini` CLI headless: it speaks the
`models/{model}:streamGenerateContent?alt=sse` wire format (and the non-streaming `generateContent` and
`countTokens`) and answers each request with the next scripted turn: function calls, then a final text.
The only stand-in in these tests: the CLI, its MCP client, the sidecar and the MCP servers are real."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedGemini:
    def __init__(self, turns: list[list[dict]]) -> None:
        """`turns`: each a list of parts, e.g. [{"functionCall": {"name": ..., "args": {...}}}] or [{"text": ..}]."""
        self.turns = list(turns)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def function_responses(self) -> list[dict]:
        """Every functionResponse part the CLI sent back (what each tool call returned)."""
        seen = []
        for request in self.requests:
            for content in request.get("contents", []):
                for part in content.get("parts", []):
                    if "functionResponse" in part and part not in seen:
                        seen.append(part)
        return seen

    def next_parts(self, body: dict) -> list[dict]:
        with self.lock:
            self.requests.append(body)
            return self.turns.pop(0) if self.turns else [{"text": "done"}]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                if ":countTokens" in self.path:
                    return self._json({"totalTokens": 10})
                parts = api.next_parts(body)
                response = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP",
                                            "index": 0}],
                            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5,
                                              "totalTokenCount": 15},
                            "modelVersion": "gemini-2.5-pro"}
                if "streamGenerateContent" in self.path:
                    data = f"data: {json.dumps(response)}\r\n\r\n".encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._json(response)

            def do_GET(self) -> None:  # noqa: N802
                self._json({"models": []})

            def _json(self, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
