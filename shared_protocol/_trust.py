"""Whom to trust on the relay's socket: the rules both sides apply before they talk.

A socket is only as private as its directory: another local user who owns it (or a symlink in its
place) can listen there and feed prompts to the user's agent, or take the user's model. So:
- the socket's directory must be a real directory (not a symlink), owned by us, closed to others (0700);
- the process on the other end must run under our uid (``SO_PEERCRED`` on Linux, ``LOCAL_PEERCRED``
  on macOS; where neither exists the check cannot be made and is skipped).

Two system calls that read metadata (``lstat``, ``getsockopt``), no data I/O.
"""

from __future__ import annotations

import os
import socket
import stat
import struct


def directory_problem(directory: str) -> str | None:
    """What makes ``directory`` unfit to hold the relay's socket, with how to fix it; None if it is fine
    or does not exist (then there is no socket to connect to, and the peer check still guards the race
    of one appearing)."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{directory} cannot be checked: {exc.strerror or exc}"
    if stat.S_ISLNK(info.st_mode):
        return (
            f"{directory} is a symbolic link (to {os.readlink(directory)}), not a private directory: someone "
            f"may be intercepting the bridge. Remove it (`rm {directory}`) and start the relay again, or use "
            "another --socket"
        )
    if not stat.S_ISDIR(info.st_mode):
        return f"{directory} is not a directory; remove it or use another --socket"
    if info.st_uid != os.getuid():
        return (
            f"{directory} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}): another user may be "
            f"intercepting the bridge. Remove it (as that user or root) or use another --socket in a "
            "directory of yours"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return (
            f"{directory} is open to other users (mode {mode:o}); run `chmod 700 {directory}` or use another --socket"
        )
    return None


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket; None where the platform cannot tell."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is not None:  # Linux: struct ucred {pid, uid, gid}
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
        return int(uid)
    local_peercred = getattr(socket, "LOCAL_PEERCRED", None)
    if local_peercred is not None:  # macOS and the BSDs: struct xucred {version, uid, ...}
        raw = sock.getsockopt(0, local_peercred, struct.calcsize("2I"))
        return int(struct.unpack("2I", raw[: struct.calcsize("2I")])[1])
    return None
