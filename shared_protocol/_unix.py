"""Unix-socket streams that are safe to cancel on every backend.

anyio's own Unix streams wait on the raw socket, on asyncio with a future the event loop may still
resolve after a cancel: the loop then reports ``InvalidStateError: invalid state`` from a callback
(seen when a relay exits while its worker reads, anyio 4.16). We connect the socket ourselves (the
relay accepts its own, see ``relay._accept``) and wrap it with anyio's generic
``SocketStream.from_socket``: a transport on asyncio, trio's own stream on trio. Neither has that
window, and both read only when asked (at most one receive buffered per connection).
"""

from __future__ import annotations

import socket

import anyio.abc


async def connect_unix(path: str) -> anyio.abc.SocketStream:
    """Connect to a listening Unix stream socket; OSError as ``connect(2)`` reports it.

    A Unix connect completes at once or fails at once (EAGAIN when the listener's backlog is full),
    so there is nothing to wait for."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return await wrap(sock)


async def wrap(sock: socket.socket) -> anyio.abc.SocketStream:
    """An anyio stream that owns a connected socket (closed if wrapping fails)."""
    try:
        return await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise
