"""A real stdio MCP server (official mcp SDK, low-level Server) whose tools are read from a JSON file on every
tools/list, so a test can change a tool's description or schema between two listings (a "rug pull").

Usage: python drifting_mcp_server.py TOOLS.json
TOOLS.json: [{"name": "search", "description": "...", "inputSchema": {...}}, ...]
Every call answers "<tool> ran with <arguments as JSON>".
"""

import json
import sys

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

TOOLS_FILE = sys.argv[1]


def _tools() -> list[types.Tool]:
    with open(TOOLS_FILE) as fh:
        return [types.Tool.model_validate(t) for t in json.load(fh)]


async def list_tools(ctx, params) -> types.ListToolsResult:
    return types.ListToolsResult(tools=_tools())


async def call_tool(ctx, params) -> types.CallToolResult:
    text = f"{params.name} ran with {json.dumps(params.arguments or {}, sort_keys=True)}"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


server = Server("drifting", on_list_tools=list_tools, on_call_tool=call_tool)


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
