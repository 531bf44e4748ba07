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
