"""Where the relay's Unix socket lives when nobody says otherwise.

Both processes compute the same path, so ``mcptb-server`` finds a relay started with defaults. The
directory is private to the user (0700): ``$XDG_RUNTIME_DIR/mcp-token-bridge`` when the session has
one, else ``<tempdir>/mcp-token-bridge-<uid>``. ``MCPTB_SOCKET`` overrides it for both sides.
"""

from __future__ import annotations

import os
import tempfile

SOCKET_ENV = "MCPTB_SOCKET"
SOCKET_NAME = "relay.sock"


def default_socket_path() -> str:
    configured = os.environ.get(SOCKET_ENV)
    if configured:
        return configured
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        base = os.path.join(runtime, "mcp-token-bridge")
    else:
        base = os.path.join(tempfile.gettempdir(), f"mcp-token-bridge-{os.getuid()}")
    return os.path.join(base, SOCKET_NAME)
