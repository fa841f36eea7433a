"""What each supported agent client exposes, so a policy's tool map can be checked for gaps.

The built-in tools of the pinned Claude Code (package.json) as its `init` event lists them, and the names
Cursor's hook events are evaluated under. `cordum policy coverage` reads a client's real list from a
`claude -p --output-format stream-json` transcript when given one.
"""

from __future__ import annotations

import json

CLAUDE_CODE_VERSION = "2.1.332"
CLIENT_TOOLS: dict[str, tuple[str, ...]] = {
    "claude-code": (
        "Task", "Bash", "CronCreate", "CronDelete", "CronList", "Edit", "EnterWorktree", "ExitWorktree",
        "ListAgents", "ListMcpResourcesTool", "Monitor", "NotebookEdit", "Read", "ReadMcpResourceDirTool",
        "ReadMcpResourceTool", "ReportFindings", "ScheduleWakeup", "SendMessage", "Skill", "TaskStop", "ToolSearch",
        "WebFetch", "WebSearch", "Workflow", "Write",
    ),
    # Cursor's hook events are decided as these built-in tools (cordum.sidecar.hook.parse_cursor_event).
    "cursor": ("Bash", "Read"),
}


def tools_from_transcript(text: str) -> list[str]:
    """Built-in tool names from a stream-json transcript (its init event) or a JSON list of names."""
    stripped = text.strip()
    if stripped.startswith("["):
        return [str(t) for t in json.loads(stripped)]
    for line in stripped.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("type") == "system" and event.get("subtype") == "init":
                return [t for t in event.get("tools") or [] if not t.startswith("mcp__")]
    raise ValueError("no init event (type system, subtype init) in the transcript")


def uncovered_tools(compiled, tools: list[str], *, server: str = "claude-code") -> list[str]:
    """The tools no tool map entry knows (each would be asked about as `unmapped tool X`)."""
    return [tool for tool in tools if compiled.evaluate({"server": server, "tool": tool, "arguments": {}}).unmapped]
