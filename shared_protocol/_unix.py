"""Unix-socket streams that are safe to cancel on every backend.

anyio's own Unix streams wait on the raw socket, on asyncio with a future the event loop may still
resolve after a cancel: the loop then reports ``InvalidStateError: invalid state`` from a callback
(seen when a relay exits while its worker reads, anyio 4.16). We connect the socket ourselves (the
relay accepts its own, see ``relay._accept``) and wrap it with anyio's generic
``SocketStream.from_socket`` on trio (trio's own stream), and with our own stream on asyncio
(``_asyncio_stream``: a transport that keeps reading up to a bounded buffer, cheaper per receive than
anyio's). Neither has that window.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Protocol, cast

import anyio
import anyio.abc

STREAM_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
"""What a receive raises when the peer ended the stream, it broke, or it was closed."""


class PushStream(Protocol):
    """A stream that can hand what arrives to a reader from the event loop's callback (asyncio's,
    ``_asyncio_stream.AsyncioSocketStream``), and hold the peer back meanwhile."""

    def push_to(self, receiver: Callable[[bytes], None] | None) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


def pushing(stream: anyio.abc.ByteStream) -> PushStream | None:
    """``stream`` if it can hand chunks over (see :class:`PushStream`), else None (trio's streams)."""
    return cast(PushStream, stream) if hasattr(stream, "push_to") else None


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
        if _on_asyncio():
            from ._asyncio_stream import AsyncioSocketStream  # imported with the first connection

            return await AsyncioSocketStream.wrap(sock)
        return await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


def _on_asyncio() -> bool:
    """Whether this task runs on asyncio (on trio no asyncio loop runs in the thread)."""
    asyncio = sys.modules.get("asyncio")
    try:
        return asyncio is not None and asyncio.get_running_loop() is not None
    except RuntimeError:
        return False


async def receive_each(stream: anyio.abc.ByteStream, take: Callable[[bytes], bool], max_bytes: int) -> None:
    """Hand ``take`` each chunk that arrives, until it returns False or the stream ends, breaks or is
    closed. From the event loop's callback where the stream can hand chunks over (asyncio's, see
    ``_asyncio_stream``: no task switch per read), else by receiving in this task. What ``take`` raises
    is raised here either way."""
    pusher = pushing(stream)
    if pusher is None:
        while True:
            try:
                data = await stream.receive(max_bytes)
            except STREAM_GONE:
                return
            if not take(data):
                return
    push = pusher.push_to
    done = anyio.Event()
    failure: list[BaseException] = []

    def on_data(data: bytes) -> None:
        try:
            if data and take(data):
                return
        except BaseException as exc:  # raised in the task that reads, as when it receives itself
            failure.append(exc)
        push(None)  # what comes after stays in the stream, as when the task stops receiving
        done.set()

    push(on_data)
    try:
        await done.wait()
    finally:
        push(None)
    if failure:
        raise failure[0]
