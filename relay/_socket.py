"""The Unix socket workers connect to: a private directory, a 0600 socket, and a peer-uid check.

The directory must be a real directory (not a symlink), belong to us and be closed to others
(0700): we create it with ``mkdir``, which never follows a symlink at that path, and refuse to use one
that is not so (``shared_protocol._trust``). A socket file left by a dead relay is replaced; one
with a live relay behind it is an error (two relays would split the workers).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat

import anyio
import anyio.abc

from shared_protocol._paths import pointer_path
from shared_protocol._trust import directory_problem, peer_uid


class SocketSetupError(Exception):
    pass


def _prepare_directory(directory: str) -> None:
    os.makedirs(os.path.dirname(directory), exist_ok=True)  # ordinary parents: $XDG_RUNTIME_DIR, /tmp...
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    problem = directory_problem(directory)
    if problem is not None:
        raise SocketSetupError(f"refusing to listen in {directory}: {problem}")


def _clear_stale(path: str) -> None:
    if not os.path.exists(path):
        return
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise SocketSetupError(f"{path} exists and is not a socket; choose another --socket path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # left behind by a relay that is gone
        return
    finally:
        probe.close()
    raise SocketSetupError(f"another relay is already listening on {path}; stop it or pass another --socket")


async def listen(path: str) -> anyio.abc.SocketListener:
    _prepare_directory(os.path.dirname(os.path.abspath(path)))
    _clear_stale(path)
    listener = await anyio.create_unix_listener(path, mode=0o600)
    return listener


def stream_peer_uid(stream: anyio.abc.SocketStream) -> int | None:
    """The connecting process's uid; None where the platform cannot tell."""
    return peer_uid(stream.extra(anyio.abc.SocketAttribute.raw_socket))


def record_default(path: str) -> str | None:
    """Write ``path`` to ``~/.mcp-token-bridge/relay-socket`` so that ``mcptb-server`` finds a relay whose
    default path depends on variables its MCP client did not pass it (``XDG_RUNTIME_DIR``, ``TMPDIR``).
    The directory is made like the socket's (0700, ours, no symlink); the file is replaced atomically.
    Returns what went wrong (the relay carries on: servers still find it on the other candidate paths)."""
    pointer = pointer_path()
    if pointer is None:
        return "no home directory to record the socket path in"
    directory = os.path.dirname(pointer)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
        problem = directory_problem(directory)
        if problem is not None:
            return f"not recording the socket path in {pointer}: {problem}"
        partial = f"{pointer}.{os.getpid()}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.write(fd, os.fsencode(os.path.abspath(path)) + b"\n")
        finally:
            os.close(fd)
        os.replace(partial, pointer)
    except OSError as exc:
        return f"cannot record the socket path in {pointer}: {exc.strerror or exc}"
    return None


def forget_default(path: str) -> None:
    """Remove the pointer if it still names ``path`` (a later relay may have replaced it)."""
    pointer = pointer_path()
    if pointer is None:
        return
    with contextlib.suppress(OSError):
        with open(pointer, "rb") as file:
            if file.read(4096).strip() == os.fsencode(os.path.abspath(path)):
                os.unlink(pointer)
