"""A real MCP server over streamable HTTP (or the older HTTP+SSE transport), built with the official mcp SDK
(MCPServer), for the tests of the sidecar's URL upstreams. Usage: python http_mcp_server.py PORT [sse]"""

import sys

from mcp.server import MCPServer

server = MCPServer("notes")


@server.tool()
def read_note(name: str) -> str:
    """Return a note's text."""
    return f"note {name}: remember the milk"


@server.tool()
def delete_note(name: str) -> str:
    """Delete a note."""
    return f"deleted {name}"


if __name__ == "__main__":
    if sys.argv[2:] == ["sse"]:
        server.run("sse", host="127.0.0.1", port=int(sys.argv[1]), sse_path="/sse")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]), streamable_http_path="/mcp")
