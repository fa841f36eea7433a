"""Cordum: governance for coding agents at the MCP layer.

`cordum.policy` and `cordum.sidecar` are pure Python and import nothing from Django; the
Celery app is only loaded when Django settings are in use, so the sidecar installs alone.
"""

__version__ = "0.1.0"
