"""Accept loops for the relay's listeners that survive running out of file descriptors.

``accept(2)`` failing with EMFILE or ENFILE (or ENOBUFS/ENOMEM) does not stop the relay: the loop
says so once, waits (10 ms doubling to 1 s while it lasts) and tries again, so open connections
keep being served and new ones wait in the kernel's backlog. A connection the peer aborted before
we took it is skipped. Each accepted socket becomes a cancel-safe stream
(``shared_protocol._unix.wrap``) handled in its own task; a handler's exception is logged and ends
only its connection.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
from anyio.streams.stapled import MultiListener

from shared_protocol._unix import wrap

log = logging.getLogger("mcptb.relay")

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]

EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_SKIPPED = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN})
MIN_BACKOFF = 0.01
MAX_BACKOFF = 1.0


def raw_sockets(listener: anyio.abc.Listener[anyio.abc.SocketStream]) -> list[socket.socket]:
    """The listening sockets behind an anyio listener (several for a host with IPv4 and IPv6)."""
    if isinstance(listener, MultiListener):
        return [sock for inner in listener.listeners for sock in raw_sockets(inner)]
    assert isinstance(listener, anyio.abc.SocketListener)
    return [listener.extra(anyio.abc.SocketAttribute.raw_socket)]


async def accept_forever(sock: socket.socket, handle: Handler, name: str) -> None:
    """Accept connections on ``sock`` until cancelled; ``name`` says which listener in the log."""
    async with anyio.create_task_group() as tg:
        backoff = 0.0
        while True:
            await anyio.wait_readable(sock)
            try:
                conn, _ = sock.accept()
            except OSError as exc:
                if exc.errno in _SKIPPED:
                    continue
                if exc.errno not in EXHAUSTED:
                    raise
                if not backoff:
                    log.warning(
                        "%s: cannot accept a connection (%s); open connections are still served, new ones wait. "
                        "Raise the open-file limit (ulimit -n) or lower --max-connections",
                        name,
                        exc.strerror,
                    )
                backoff = min(max(backoff * 2, MIN_BACKOFF), MAX_BACKOFF)
                await anyio.sleep(backoff)
                continue
            if backoff:
                log.info("%s: accepting connections again", name)
                backoff = 0.0
            tg.start_soon(_handle, conn, handle, name)


async def _handle(conn: socket.socket, handle: Handler, name: str) -> None:
    conn.setblocking(False)
    if conn.family in (socket.AF_INET, socket.AF_INET6):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        stream = await wrap(conn)
    except OSError as exc:  # the peer left already
        log.debug("%s: dropped a connection: %r", name, exc)
        return
    try:
        await handle(stream)
    except Exception:
        log.exception("%s: connection handler failed", name)
