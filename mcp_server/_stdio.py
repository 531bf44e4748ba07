"""mcptb-server's stdio: MCP messages over fds 0 and 1, read and written on the event loop, no threads.

The ``mcp`` SDK's ``stdio_server`` hands every line read, every write and every flush to a worker
thread: 10-16 context switches per request, about 40 % of mcptb-server's CPU per request. This does
the same job with non-blocking I/O, on asyncio and on trio alike (measured through the whole path at
concurrency 8: 0.92 -> 0.57 ms of mcptb-server's CPU per request). Rules:

- While it serves, fd 0 reads /dev/null and fd 1 writes to stderr, as under the SDK: the wire is a
  private duplicate of each (close-on-exec, above fd 2), so a stray print, a log line or a child
  process cannot corrupt the protocol. At exit what ``sys.stdout`` still buffers goes to stderr, and
  both fds point at the wire again.
- The wire's descriptors are made non-blocking, and each read or write is tried first: the transport
  waits for a descriptor (``anyio.wait_readable``/``wait_writable``) only when it would block. So a
  regular file, which epoll refuses to watch and which never blocks, is read and written directly,
  and a pipe, a socket or a terminal is waited on. O_NONBLOCK belongs to the open file description,
  which the MCP client or a shell may share: each descriptor's own mode is restored at exit. (A
  terminal on stdout usually shares its description with stderr: while serving, a log line on a
  stalled terminal fails instead of waiting.)
- A message is one line, JSON and ``\\n``, and one writer task writes them: the messages waiting when
  it starts a write go out in one ``os.write`` when the pipe takes them, a partial write is continued
  until the last line is out, and two messages never interleave. Once stdout fails (the client closed
  it) messages are dropped and the input ends, so the server exits as at the end of stdin.
- A line is parsed as the SDK parses it (UTF-8 with bad bytes replaced, ``jsonrpc_message_adapter``):
  one that is not a JSON-RPC message becomes an Exception on the read stream, which the SDK logs and
  skips. A line longer than :data:`MAX_MESSAGE_BYTES` is dropped as it arrives and becomes one
  :class:`MessageTooLong` (the SDK has no limit: a line without an end would fill the memory). The end
  of stdin ends the read stream, and so does a read that fails (ECONNRESET: a socket the client
  closed with our answer unread); an unterminated last line is still parsed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from shared_protocol import MAX_LINE_BYTES

log = logging.getLogger("mcptb.server")

MAX_MESSAGE_BYTES = 3 * MAX_LINE_BYTES
"""Longest line accepted from the MCP client. An answer travels on to the relay in one link line
(``MAX_LINE_BYTES``); this is three times that, so an answer the link can carry still fits when the
client escapes every non-ASCII character as ``\\uXXXX`` (at most three times its UTF-8 size)."""
READ_SIZE = 64 * 1024
"""Bytes asked of one read: a pipe's whole buffer on Linux."""
BATCH_BYTES = 64 * 1024
"""Messages waiting to be written join one write until it is this long (a larger message goes whole)."""

Streams = tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]
"""What ``Server.run`` takes: the client's messages (or what was wrong with a line), and ours to it."""


class MessageTooLong(Exception):
    """A line from the MCP client longer than the transport accepts; its bytes were dropped."""


class LineSplitter:
    """Bytes in, complete lines out (without their ``\\n``), each at most ``max_bytes`` long. A longer
    line is dropped as it arrives and leaves one :class:`MessageTooLong` in its place. Only new bytes
    are searched for a line's end, so a long line costs time in proportion to its length."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._partial = bytearray()
        """The start of a line whose end has not arrived yet."""
        self._dropping = False
        """The line being received is too long: its bytes are dropped until its end."""

    def feed(self, data: bytes) -> list[bytes | MessageTooLong]:
        lines: list[bytes | MessageTooLong] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._dropping:
                self._dropping = False
            elif len(self._partial) + end - start > self.max_bytes:
                lines.append(self._too_long())
            elif self._partial:
                self._partial += memoryview(data)[start:end]
                lines.append(bytes(self._partial))
            else:
                lines.append(data[start:end])
            self._partial.clear()
            start = end + 1
        if self._dropping:
            return lines
        if len(self._partial) + len(data) - start > self.max_bytes:
            self._partial.clear()
            self._dropping = True
            lines.append(self._too_long())
        else:
            self._partial += memoryview(data)[start:]
        return lines

    def end(self) -> bytes | None:
        """At the end of the input: the last line, if it did not end with ``\\n``."""
        return bytes(self._partial) if self._partial else None

    def _too_long(self) -> MessageTooLong:
        return MessageTooLong(f"a message from the MCP client longer than {self.max_bytes} bytes (dropped)")


@asynccontextmanager
async def stdio_transport() -> AsyncIterator[Streams]:
    """Serve MCP over this process's stdin and stdout, diverted while it serves (see the rules above)."""
    with _claimed(0, _null_input) as wire_in, _claimed(1, _stderr_or_null) as wire_out:
        try:
            async with fd_transport(wire_in, wire_out) as streams:
                yield streams
        finally:
            with suppress(OSError, ValueError):  # stray output still buffered goes to stderr, not the wire
                if sys.stdout is not None:
                    sys.stdout.flush()


@asynccontextmanager
async def fd_transport(
    read_fd: int, write_fd: int, max_message_bytes: int = MAX_MESSAGE_BYTES
) -> AsyncIterator[Streams]:
    """MCP messages read from ``read_fd`` and written to ``write_fd``, each descriptor non-blocking
    while it serves. At exit reading stops and what the server sent is written out first."""
    inbound_writer, inbound = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    outbound, outbound_reader = anyio.create_memory_object_stream[SessionMessage](0)
    reading = anyio.CancelScope()
    with _non_blocking(read_fd), _non_blocking(write_fd):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read_messages, read_fd, inbound_writer, max_message_bytes, reading)
            tg.start_soon(_write_messages, write_fd, outbound_reader, reading)
            try:
                yield inbound, outbound
            finally:
                reading.cancel()
                outbound.close()


async def _read_messages(
    fd: int,
    inbound: MemoryObjectSendStream[SessionMessage | Exception],
    max_message_bytes: int,
    reading: anyio.CancelScope,
) -> None:
    lines = LineSplitter(max_message_bytes)
    with reading, inbound:
        try:
            while data := await _read(fd):
                for line in lines.feed(data):
                    if isinstance(line, MessageTooLong):
                        log.warning("%s", line)
                        await inbound.send(line)
                    else:
                        await inbound.send(_parse(line))
            last = lines.end()
            if last is not None:
                await inbound.send(_parse(last))
        except anyio.BrokenResourceError:
            log.debug("the MCP session stopped reading before the end of stdin")


async def _read(fd: int) -> bytes:
    """The next bytes from ``fd``; empty at the end of the input."""
    while True:
        try:
            return os.read(fd, READ_SIZE)
        except BlockingIOError:
            await anyio.wait_readable(fd)
        except OSError as exc:  # ECONNRESET, EIO: the client's side is gone
            log.debug("reading stdin failed (%s): the end of the input", exc)
            return b""


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        message = types.jsonrpc_message_adapter.validate_json(line.decode("utf-8", "replace"), by_name=False)
    except ValidationError as exc:
        return exc
    return SessionMessage(message)


async def _write_messages(
    fd: int, outbound: MemoryObjectReceiveStream[SessionMessage], reading: anyio.CancelScope
) -> None:
    with outbound:
        async for message in outbound:
            batch = [_line(message)]
            size = len(batch[0])
            while size < BATCH_BYTES:
                try:
                    batch.append(_line(outbound.receive_nowait()))
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
                size += len(batch[-1])
            try:
                await _write_all(fd, b"".join(batch))
            except OSError as exc:
                log.info("cannot write to the MCP client (stdout: %s); ending the input", exc.strerror or exc)
                reading.cancel()
                async for _dropped in outbound:
                    pass
                return


def _line(message: SessionMessage) -> bytes:
    """The message as the SDK writes it (``model_dump_json(by_alias=True, exclude_unset=True)``), made
    bytes by the serializer itself rather than through a ``str``."""
    model = message.message
    return model.__pydantic_serializer__.to_json(model, by_alias=True, exclude_unset=True) + b"\n"


async def _write_all(fd: int, data: bytes) -> None:
    """All of ``data``: in one write when the descriptor takes it, else in pieces as it drains."""
    rest = memoryview(data)
    while rest:
        try:
            rest = rest[os.write(fd, rest) :]
        except BlockingIOError:
            await anyio.wait_writable(fd)


@contextmanager
def _non_blocking(fd: int) -> Iterator[None]:
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        yield
    finally:
        os.set_blocking(fd, was_blocking)


@contextmanager
def _claimed(fd: int, stand_in: Callable[[], int]) -> Iterator[int]:
    """A private duplicate of ``fd`` (the wire), while ``fd`` itself points at what ``stand_in`` opens;
    at exit ``fd`` points at the wire again."""
    wire = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    try:
        substitute = stand_in()
        try:
            os.dup2(substitute, fd)
        finally:
            os.close(substitute)
        try:
            yield wire
        finally:
            os.dup2(wire, fd)
    finally:
        os.close(wire)


def _null_input() -> int:
    return os.open(os.devnull, os.O_RDONLY)


def _stderr_or_null() -> int:
    try:
        return os.dup(2)
    except OSError:  # no stderr: stray output is lost rather than on the wire
        return os.open(os.devnull, os.O_WRONLY)
