"""Finding the relay without ``--socket``: the candidate paths of ``shared_protocol._paths``, plus the one
the last default relay recorded under ``$HOME`` (read here: the pointer file is the only file this
server reads).

The pointer is trusted like a socket directory: ``~/.mcp-token-bridge`` must be ours, 0700 and no
symlink, the file no symlink either; a pointer that fails is ignored (the other candidates still count),
and the path it names gets the usual checks before and after connecting.
"""

from __future__ import annotations

import os

from shared_protocol._paths import pointer_path, socket_candidates
from shared_protocol._trust import directory_problem

MAX_POINTER_BYTES = 4096


def recorded_socket() -> str | None:
    """The socket path in ``~/.mcp-token-bridge/relay-socket``, if it is there and trustworthy."""
    pointer = pointer_path()
    if pointer is None:
        return None
    directory = os.path.dirname(pointer)
    if not os.path.isdir(directory) or directory_problem(directory) is not None:
        return None
    try:
        fd = os.open(pointer, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        raw = os.read(fd, MAX_POINTER_BYTES)
    finally:
        os.close(fd)
    try:
        path = raw.decode().strip()
    except UnicodeDecodeError:
        return None
    return path if os.path.isabs(path) and "\n" not in path else None


def candidates() -> list[str]:
    """Where to look for the relay now, in order (see ``shared_protocol._paths``)."""
    return socket_candidates(recorded_socket())
