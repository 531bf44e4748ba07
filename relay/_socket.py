"""The Unix socket workers connect to: a private directory, a 0600 socket, and a peer-uid check.

The directory must belong to us and be closed to others (0700); we create it so, and refuse to use
one that is not. A socket file left by a dead relay is replaced; one with a live relay behind it is
an error (two relays would split the workers).
"""

from __future__ import annotations

import os
import socket
import stat
import struct

import anyio
import anyio.abc


class SocketSetupError(Exception):
    pass


def _prepare_directory(directory: str) -> None:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.stat(directory)
    if info.st_uid != os.getuid():
        raise SocketSetupError(f"{directory} belongs to another user; choose another --socket path")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise SocketSetupError(
            f"{directory} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run `chmod 700 {directory}` or choose another --socket path"
        )


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


def peer_uid(stream: anyio.abc.SocketStream) -> int | None:
    """The connecting process's uid (Linux SO_PEERCRED); None where the platform cannot tell."""
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)
