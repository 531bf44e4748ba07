"""How to start this installation's commands from anywhere (an MCP client's configuration, a printed
hint): the script installed beside this Python, else ``python -m`` with this Python, never another
installation found on PATH."""

from __future__ import annotations

import os
import sys


def beside(name: str) -> str | None:
    """The executable ``name`` installed beside this Python, if any."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.access(path, os.X_OK) else None


def server_command() -> list[str]:
    """``mcptb-server`` of this installation: the script beside this Python, else ``python -m mcp_server``."""
    script = beside("mcptb-server")
    return [script] if script else [sys.executable, "-m", "mcp_server"]
