"""Cordum MCP enforcement sidecar: a transparent JSON-RPC relay that decides every tools/call locally.

Pure Python: never imports Django or any cordum Django app (the sidecar installs alone from
requirements/sidecar.txt).
"""

__version__ = "0.1.0"
