"""Unified diffs of file writes, for reviewers: what a held `write_file`/`edit_file` (filesystem MCP server) or
`Write`/`Edit`/`MultiEdit` (Claude Code) would change, computed from the file on disk and the call's arguments.

The diff is built from the call's real arguments, not the policy-redacted evidence: a policy that redacts
`content` (the demo's does) must still let the reviewer see what they approve. It travels only in the approval
request, which the control plane keeps encrypted and purges once decided; the evidence record keeps the
redacted arguments. Credential-shaped text on either side of the diff is masked, and the diff is capped in size.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from cordum.policy.evidence import mask_secrets
from cordum.policy.secrets import default_scanner

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


def _strings(*values: Any) -> bool:
    return all(isinstance(v, str) for v in values)


def write_diff(*, tool: str, arguments: dict[str, Any], root: str | None) -> str:
    """The unified diff the call would apply, or "" when it is not a recognised write or cannot be shown."""
    args = arguments or {}
    path_value = args.get("path") if "path" in args else args.get("file_path")
    if not isinstance(path_value, str) or not path_value:
        return ""
    path = Path(path_value if os.path.isabs(path_value) or not root else os.path.join(root, path_value))
    before = _read(path)
    if before is None:
        return ""
    after: str | None = None
    if tool in ("write_file", "Write"):
        if not _strings(args.get("content")):
            return ""
        after = args["content"]
    elif tool == "Edit":
        if not _strings(args.get("old_string"), args.get("new_string")):
            return ""
        after = _apply_edits(before, [(args["old_string"], args["new_string"], bool(args.get("replace_all")))])
    elif tool == "MultiEdit":
        edits = args.get("edits")
        if not isinstance(edits, list):
            return ""
        after = _apply_edits(before, [(e.get("old_string", ""), e.get("new_string", ""), bool(e.get("replace_all")))
                                      for e in edits if isinstance(e, dict)])
    elif tool == "edit_file":
        edits = args.get("edits")
        if not isinstance(edits, list):
            return ""
        after = _apply_edits(before, [(e.get("oldText", ""), e.get("newText", ""), False)
                                     for e in edits if isinstance(e, dict)])
    if after is None:
        return ""
    # Secrets are masked on whole texts first (a private key spans lines), each mask naming what it hides;
    # then credential-named assignments line by line.
    scanner = default_scanner()
    before, after = scanner.mask(before)[0], scanner.mask(after)[0]
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 f"a/{path_value}", f"b/{path_value}")
    text = "".join(mask_secrets(line) if line.endswith("\n") else mask_secrets(line) + "\n\\ No newline at end of file\n"
                   for line in lines)
    if len(text.encode()) > MAX_DIFF_BYTES:
        return text.encode()[:MAX_DIFF_BYTES].decode("utf-8", "ignore") + "\n[diff truncated]\n"
    return text


# --- shell commands ------------------------------------------------------------------------------
SHELL_TOOLS = ("Bash", "PowerShell")


def shell_programs(command: str) -> list[str]:
    """The programs a command line runs, split at pipes, `&&`, `||`, `;`, `&` and (sub)shell parentheses (the
    stdlib's shell lexer; `$(…)` and backquotes open a subshell too)."""
    import shlex

    lexer = shlex.shlex(command.replace("`", " ; "), posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    programs: list[str] = []
    words: list[str] = []
    try:
        for token in lexer:
            if token.strip(";&|()") == "":  # an operator (or a run of them)
                if words:
                    programs.append(shlex.join(words))
                    words = []
            elif token != "$":  # the `$` of `$(`
                words.append(token)
    except ValueError:  # unbalanced quotes: shown whole, as the shell would refuse it too
        return [command]
    if words:
        programs.append(shlex.join(words))
    return programs or [command]


MAX_PUSHED_COMMITS = 20


def pushed_commits(program: str, root: str | None) -> list[str]:
    """For `git push [remote] [src[:dst]]`, the commits it would push ("<sha> <subject>"), as git in the call's
    root sees them; [] for another program or when git cannot tell (no root, no remote branch)."""
    import shlex
    import subprocess

    try:
        words = shlex.split(program)
    except ValueError:
        return []
    if not root or len(words) < 2 or words[0] != "git" or "push" not in words:
        return []
    rest = [w for w in words[words.index("push") + 1:] if not w.startswith("-")]
    if len(rest) >= 2:
        src, _, dst = rest[1].lstrip("+").partition(":")
        src = src or "HEAD"
        ranges = [[f"{rest[0]}/{dst or src}..{src}"], [src, "--not", f"--remotes={rest[0]}"]]
    else:
        ranges = [["@{push}..HEAD"], ["HEAD", "--not", "--remotes"]]
    for revisions in ranges:
        if any(r.startswith("-") for r in revisions[:1]):  # never an option from the agent's command line
            return []
        try:
            done = subprocess.run(["git", "-C", root, "log", "--oneline", "--no-decorate",
                                   f"-n{MAX_PUSHED_COMMITS + 1}", *revisions, "--"],
                                  capture_output=True, text=True, timeout=3, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return []
        if done.returncode == 0:
            return done.stdout.splitlines()
    return []


def shell_view(*, command: str, rule: str | None, decide, root: str | None = None) -> str:
    """The command and its programs, one per line, each program `decide` holds by the same rule marked `>`:
    the part that made the rule apply; under a `git push`, the commits it would push (`+`).
    `decide(program) -> rule id or None`."""
    programs = shell_programs(command)
    lines = [f"$ {mask_secrets(command)}"]
    for i, program in enumerate(programs, 1):
        hit = rule is not None and len(programs) > 1 and decide(program) == rule
        lines.append(f"{'>' if hit else ' '} {i:>2}  {mask_secrets(program)}{f'   <- {rule}' if hit else ''}")
        commits = pushed_commits(program, root)
        lines += [f"+       {mask_secrets(c)}" for c in commits[:MAX_PUSHED_COMMITS]]
        if len(commits) > MAX_PUSHED_COMMITS:
            lines.append("        … and more commits")
    return "\n".join(lines) + "\n"
