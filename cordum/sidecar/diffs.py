"""Unified diffs of file writes, for reviewers: what a held `write_file`/`edit_file` (filesystem MCP server) or
`Write`/`Edit`/`MultiEdit` (Claude Code) would change, computed from the file on disk and the call's arguments.

A diff shows file content, so it is only built when the policy's evidence redaction left the written text
visible in the recorded arguments (a policy that redacts `content` gets no diff), and it is capped in size.
The lines it shows from the file on disk were never redacted, so credentials in them are masked.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from cordum.policy.evidence import mask_secrets

MAX_DIFF_BYTES = 64 * 1024
MAX_FILE_BYTES = 1024 * 1024


def _read(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError):
        return None


def _apply_edits(text: str, edits: list[tuple[str, str, bool]]) -> str | None:
    for old, new, replace_all in edits:
        if old not in text:
            return None
        text = text.replace(old, new) if replace_all else text.replace(old, new, 1)
    return text


def _visible(value: Any, redacted: Any) -> bool:
    return isinstance(value, str) and value == redacted


def write_diff(*, tool: str, arguments: dict[str, Any], redacted: dict[str, Any], root: str | None) -> str:
    """The unified diff the call would apply, or "" when it is not a recognised write or cannot be shown."""
    args, red = arguments or {}, redacted or {}
    path_value = args.get("path") if "path" in args else args.get("file_path")
    if not isinstance(path_value, str) or not path_value:
        return ""
    path = Path(path_value if os.path.isabs(path_value) or not root else os.path.join(root, path_value))
    before = _read(path)
    if before is None:
        return ""
    after: str | None = None
    if tool in ("write_file", "Write"):
        if not _visible(args.get("content"), red.get("content")):
            return ""
        after = args["content"]
    elif tool == "Edit":
        if not (_visible(args.get("old_string"), red.get("old_string"))
                and _visible(args.get("new_string"), red.get("new_string"))):
            return ""
        after = _apply_edits(before, [(args["old_string"], args["new_string"], bool(args.get("replace_all")))])
    elif tool == "MultiEdit":
        edits = args.get("edits")
        red_edits = red.get("edits")
        if not isinstance(edits, list) or edits != red_edits:
            return ""
        after = _apply_edits(before, [(e.get("old_string", ""), e.get("new_string", ""), bool(e.get("replace_all")))
                                      for e in edits if isinstance(e, dict)])
    elif tool == "edit_file":
        edits = args.get("edits")
        if not isinstance(edits, list) or edits != red.get("edits"):
            return ""
        after = _apply_edits(before, [(e.get("oldText", ""), e.get("newText", ""), False)
                                     for e in edits if isinstance(e, dict)])
    if after is None:
        return ""
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 f"a/{path_value}", f"b/{path_value}")
    text = "".join(mask_secrets(line) if line.endswith("\n") else mask_secrets(line) + "\n\\ No newline at end of file\n"
                   for line in lines)
    if len(text.encode()) > MAX_DIFF_BYTES:
        return text.encode()[:MAX_DIFF_BYTES].decode("utf-8", "ignore") + "\n[diff truncated]\n"
    return text
