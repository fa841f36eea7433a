"""A local stand-in for GitHub's REST API that checks every request against GitHub's published OpenAPI description
(npm's `@octokit/openapi`, `generated/api.github.com.json`) with openapi-core and records it.

It serves the calls Cordum makes (commit statuses; listing, creating and updating issue comments), answering with
the description's own response examples, so a client that parses them sees GitHub's shapes. A request the
description does not allow is answered 422 and kept in `invalid`, so a test fails on it.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

SPEC_PATH = Path(__file__).resolve().parents[2] / "node_modules" / "@octokit" / "openapi" / "generated" / \
    "api.github.com.json"
GITHUB = "https://api.github.com"  # the server the description names; requests are validated as if sent there


@cache
def _spec() -> dict:
    if not SPEC_PATH.is_file():
        raise RuntimeError(f"GitHub's OpenAPI description is missing at {SPEC_PATH}: run `make node` (npm install).")
    return json.loads(SPEC_PATH.read_text())


@cache
def _openapi():
    from openapi_core import Config, OpenAPI

    # The description is GitHub's own; checking the requests against it is the point, not re-validating it.
    return OpenAPI.from_dict(_spec(), config=Config(spec_validator_cls=None))


def _example(path: str, method: str, status: str):
    content = _spec()["paths"][path][method]["responses"][status]["content"]["application/json"]
    example = content["examples"]["default"]
    if "$ref" in example:  # "#/components/examples/<name>"
        example = _spec()["components"]["examples"][example["$ref"].rsplit("/", 1)[1]]
    return copy.deepcopy(example["value"])


ROUTES = [
    ("POST", re.compile(r"^/repos/([^/]+)/([^/]+)/statuses/([0-9a-f]{40})$"), "status"),
    ("GET", re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$"), "list_comments"),
    ("POST", re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$"), "create_comment"),
    ("PATCH", re.compile(r"^/repos/([^/]+)/([^/]+)/issues/comments/(\d+)$"), "update_comment"),
]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    body: dict | None
    headers: dict


@dataclass
class FakeGitHub:
    """State: the statuses per sha (newest last) and the comments per issue number."""

    requests: list[Recorded] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    statuses: dict[str, list[dict]] = field(default_factory=dict)
    comments: dict[int, dict[int, str]] = field(default_factory=dict)
    next_id: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for_status(self, sha: str, state: str, timeout: float = 60) -> bool:
        """Block until a commit status `state` was posted for `sha` (woken by each request, no polling)."""
        with self.changed:
            return self.changed.wait_for(lambda: any(s["state"] == state for s in self.statuses.get(sha, [])),
                                         timeout)

    def validate(self, method: str, path: str, query: str, body: bytes, headers: dict) -> str | None:
        from openapi_core.testing import MockRequest

        request = MockRequest(GITHUB, method.lower(), path, args=dict(parse_qsl(query)), data=body or None,
                              headers=headers, content_type=headers.get("content-type", "application/json"))
        try:
            _openapi().validate_request(request)
        except Exception as exc:  # openapi-core's validation errors: say which and why
            cause = getattr(exc, "__cause__", None)
            return f"{method} {path}: {type(exc).__name__}: {exc}{f' ({cause})' if cause else ''}"
        return None

    def handle(self, method: str, path: str, body: dict | None) -> tuple[int, object]:
        for route_method, pattern, name in ROUTES:
            match = pattern.match(path) if route_method == method else None
            if match:
                return getattr(self, name)(*match.groups(), body=body)
        return 404, {"message": "Not Found"}

    def status(self, owner, repo, sha, *, body):
        out = _example("/repos/{owner}/{repo}/statuses/{sha}", "post", "201")
        out.update({k: body.get(k) for k in ("state", "description", "target_url", "context")})
        self.statuses.setdefault(sha, []).append(body)
        return 201, out

    def _comment(self, comment_id: int, text: str, path: str, method: str, status: str):
        out = _example(path, method, status)
        out = out[0] if isinstance(out, list) else out
        out.update({"id": comment_id, "body": text})
        return out

    def list_comments(self, owner, repo, number, *, body):
        path = "/repos/{owner}/{repo}/issues/{issue_number}/comments"
        return 200, [self._comment(cid, text, path, "get", "200")
                     for cid, text in self.comments.get(int(number), {}).items()]

    def create_comment(self, owner, repo, number, *, body):
        self.next_id += 1
        self.comments.setdefault(int(number), {})[self.next_id] = body["body"]
        return 201, self._comment(self.next_id, body["body"], "/repos/{owner}/{repo}/issues/{issue_number}/comments",
                                  "post", "201")

    def update_comment(self, owner, repo, comment_id, *, body):
        for comments in self.comments.values():
            if int(comment_id) in comments:
                comments[int(comment_id)] = body["body"]
                return 200, self._comment(int(comment_id), body["body"],
                                          "/repos/{owner}/{repo}/issues/comments/{comment_id}", "patch", "200")
        return 404, {"message": "Not Found"}


def _handler(state: FakeGitHub):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            body = json.loads(raw) if raw else None
            with state.lock:
                state.requests.append(Recorded(self.command, url.path, dict(parse_qsl(url.query)), body, headers))
                problem = state.validate(self.command, url.path, url.query, raw, headers)
                if problem:
                    state.invalid.append(problem)
                    status, payload = 422, {"message": problem}
                else:
                    status, payload = state.handle(self.command, url.path, body)
            with state.changed:
                state.changed.notify_all()
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve  # noqa: N815 - http.server's naming

        def log_message(self, *args):
            pass

    return Handler


class GitHubServer:
    """`with GitHubServer() as github:` serves on 127.0.0.1 (github.url) until the block ends."""

    def __init__(self) -> None:
        self.state = FakeGitHub()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeGitHub:
        _openapi()  # load before the first request
        self.thread.start()
        self.state.url = self.url
        return self.state

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)
