"""A real MCP server over stdio, built with the official mcp SDK (MCPServer), with one `fetch` tool that really
fetches a URL (the egress tool of the session data-flow tests). Usage: python fetch_mcp_server.py"""

import urllib.request

from mcp.server import MCPServer

server = MCPServer("fetch")


@server.tool()
def fetch(url: str) -> str:
    """Fetch a URL and return the start of its body as text."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a test server fetching a test URL
        return response.read(4096).decode("utf-8", "replace")


if __name__ == "__main__":
    server.run("stdio")
