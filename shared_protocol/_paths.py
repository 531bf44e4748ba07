"""Where the relay's Unix socket lives when nobody says otherwise, and where ``mcptb-server`` looks for it.

The relay listens at its default path: ``$XDG_RUNTIME_DIR/mcp-token-bridge/relay.sock`` when the session
has a runtime directory, else ``<tempdir>/mcp-token-bridge-<uid>/relay.sock`` (a private 0700 directory
either way). ``MCPTB_SOCKET`` (or ``--socket``) overrides it on both sides, and then nothing else is
looked at.

MCP clients start their stdio servers with a minimal environment (Codex CLI passes ``HOME``, ``PATH``,
``USER``, ``TMPDIR`` and a few more; no ``XDG_RUNTIME_DIR``), so a server cannot just compute the same
path as a relay started in a desktop terminal. It tries, in order (:func:`socket_candidates`):
1. the path recorded in ``~/.mcp-token-bridge/relay-socket`` by the last relay started on its default
   path (``HOME`` is the one variable every client passes; :func:`pointer_path`), so the relay started
   last wins;
2. the path a relay started in its own environment would use;
3. ``/run/user/<uid>/mcp-token-bridge/relay.sock``, where a systemd session's runtime directory is;
4. the temp-directory fallbacks, for its own temp dir and for ``/tmp``.
Every candidate gets the same trust checks (``_trust``) before and after connecting: a directory that is
ours, 0700 and no symlink, a peer running as our uid. Reading the pointer is left to the server; this
module computes paths only.
"""

from __future__ import annotations

import os
import tempfile

SOCKET_ENV = "MCPTB_SOCKET"
SOCKET_NAME = "relay.sock"
DIRECTORY_NAME = "mcp-token-bridge"
POINTER_DIRECTORY = ".mcp-token-bridge"
POINTER_NAME = "relay-socket"
RUN_USER = "/run/user"
DEFAULT_SOCKET_HELP = "$XDG_RUNTIME_DIR/mcp-token-bridge/relay.sock, else <tempdir>/mcp-token-bridge-<uid>/relay.sock"
"""The relay's default path, in words (for both commands' --help)."""
POINTER_HELP = "~/.mcp-token-bridge/relay-socket"


def _temp_path(tempdir: str) -> str:
    return os.path.join(tempdir, f"{DIRECTORY_NAME}-{os.getuid()}", SOCKET_NAME)


def _own_default() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return os.path.join(runtime, DIRECTORY_NAME, SOCKET_NAME)
    return _temp_path(tempfile.gettempdir())


def default_socket_path() -> str:
    """The relay's default (``MCPTB_SOCKET`` when set)."""
    return os.environ.get(SOCKET_ENV) or _own_default()


def pointer_path() -> str | None:
    """``~/.mcp-token-bridge/relay-socket``; None when there is no home directory to derive it from."""
    home = os.path.expanduser("~")
    if not home or home == "~" or not os.path.isabs(home):
        return None
    return os.path.join(home, POINTER_DIRECTORY, POINTER_NAME)


def socket_candidates(pointed: str | None = None) -> list[str]:
    """Where ``mcptb-server`` looks for a relay, in order, without duplicates (``pointed``: the path
    read from :func:`pointer_path`, if any). With ``MCPTB_SOCKET`` set, only that path."""
    configured = os.environ.get(SOCKET_ENV)
    if configured:
        return [configured]
    uid = os.getuid()
    paths = [
        pointed or "",
        _own_default(),
        os.path.join(RUN_USER, str(uid), DIRECTORY_NAME, SOCKET_NAME),
        _temp_path(tempfile.gettempdir()),
        _temp_path("/tmp"),
    ]
    return list(dict.fromkeys(p for p in paths if p and os.path.isabs(p)))
