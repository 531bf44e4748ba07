"""mcptb-server's own stdio transport (mcp_server/_stdio.py), in process over real descriptors: pipes,
a regular file and a pseudo-terminal, on asyncio and trio. The test plays the MCP client on the other
ends. The diversion of fds 0 and 1 is tested with a real process (the last test)."""

from __future__ import annotations

import json
import logging
import os
import pty
import select
import socket
import subprocess
import sys
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise

import anyio
import mcp_types as types
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from mcp_server._stdio import LineSplitter, MessageTooLong, fd_transport

from conftest import ROOT

anyio_tests = pytest.mark.anyio


class Descriptors:
    """The descriptors a test opened: it closes them with :meth:`close`, the fixture the others."""

    def __init__(self) -> None:
        self.open: list[int] = []

    def add(self, *fds: int) -> tuple[int, ...]:
        self.open += fds
        return fds

    def close(self, fd: int) -> None:
        self.open.remove(fd)
        os.close(fd)


@pytest.fixture
def fds() -> Iterator[Descriptors]:
    descriptors = Descriptors()
    yield descriptors
    for fd in descriptors.open:
        os.close(fd)


@dataclass
class Pipes:
    stdin: int
    client_in: int
    """The client's end of the server's stdin."""
    stdout: int
    client_out: int
    """The client's end of the server's stdout."""


@pytest.fixture
def pipes(fds: Descriptors) -> Pipes:
    stdin, client_in = fds.add(*os.pipe())
    client_out, stdout = fds.add(*os.pipe())
    return Pipes(stdin, client_in, stdout, client_out)


def request(id: int, method: str = "ping") -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": method}).encode() + b"\n"


def response(id: int, text: str = "") -> SessionMessage:
    return SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=id, result={"text": text}))


def sdk_line(message: SessionMessage) -> bytes:
    """What the ``mcp`` SDK's stdio_server writes for ``message``."""
    return (message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode()


def read_lines(
    fd: int, count: int, pause: float = 0.0, size: int = 65536, on_read: Callable[[], object] = lambda: None
) -> list[bytes]:
    """``count`` lines from ``fd`` (blocking: run it in a thread), reading ``size`` bytes at a time and
    pausing ``pause`` seconds before each read: a slow client. Fails when they are not all there
    within 20 s (a line cut short never ends)."""
    deadline = time.monotonic() + 20
    data = b""
    while data.count(b"\n") < count:
        time.sleep(pause)
        readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert readable, f"{count} lines not there after 20 s, only {len(data)} bytes"
        chunk = os.read(fd, size)
        assert chunk, f"the output ended after {len(data)} bytes"
        data += chunk
        on_read()
    lines = data.split(b"\n")
    assert lines[count:] == [b""], "more than the lines expected"
    return [line + b"\n" for line in lines[:count]]


async def take(inbound, count: int) -> list[SessionMessage | Exception]:
    with anyio.fail_after(10):
        return [await inbound.receive() for _ in range(count)]


@anyio_tests
async def test_messages_make_the_round_trip_as_the_sdk_writes_them(pipes):
    async with fd_transport(pipes.stdin, pipes.stdout) as (inbound, outbound):
        for id in range(3):
            os.write(pipes.client_in, request(id, f"method/{id}"))
        received = await take(inbound, 3)
        assert [(m.message.id, m.message.method) for m in received] == [(i, f"method/{i}") for i in range(3)]
        answers = [response(0, "zero"), response(1, "ünïcode"), response(2, "two")]
        for answer in answers:
            await outbound.send(answer)
        lines = await anyio.to_thread.run_sync(read_lines, pipes.client_out, 3)
    assert lines == [sdk_line(answer) for answer in answers]


@anyio_tests
async def test_a_message_larger_than_the_pipe_goes_out_whole_to_a_slow_client_while_the_loop_runs(pipes):
    big, small = response(1, "x" * 1024 * 1024), response(2, "after")
    ticks, ticks_at_each_read, lines = 0, [], []
    done = anyio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0.001)

    async def slow_client() -> None:
        lines.extend(
            await anyio.to_thread.run_sync(
                read_lines, pipes.client_out, 2, 0.01, 65536, lambda: ticks_at_each_read.append(ticks)
            )
        )
        done.set()

    async with fd_transport(pipes.stdin, pipes.stdout) as (_, outbound), anyio.create_task_group() as tg:
        tg.start_soon(tick)
        tg.start_soon(slow_client)
        await anyio.sleep(0.01)
        tg.start_soon(outbound.send, big)
        await anyio.sleep(0.01)
        tg.start_soon(outbound.send, small)  # waits for the writer: never inside the big line
        with anyio.fail_after(30):
            await done.wait()
    assert lines == [sdk_line(big), sdk_line(small)]
    assert len(set(ticks_at_each_read)) > len(ticks_at_each_read) / 2, "the loop stood still while it was written"


@anyio_tests
async def test_many_messages_in_one_read_all_arrive_in_order(pipes):
    os.write(pipes.client_in, b"".join(request(id) for id in range(300)))
    async with fd_transport(pipes.stdin, pipes.stdout) as (inbound, _):
        received = await take(inbound, 300)
    assert [m.message.id for m in received] == list(range(300))


@anyio_tests
async def test_a_line_split_across_reads_arrives_once_and_whole(pipes):
    line = (
        json.dumps(
            {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "é"}}, ensure_ascii=False
        ).encode()
        + b"\n"
    )
    cut = line.index("é".encode()) + 1  # inside the two bytes of é
    async with fd_transport(pipes.stdin, pipes.stdout) as (inbound, _):
        os.write(pipes.client_in, line[:cut])
        with anyio.move_on_after(0.2):
            early = await inbound.receive()
            pytest.fail(f"a message before its line ended: {early!r}")
        os.write(pipes.client_in, line[cut:] + request(8))
        first, second = await take(inbound, 2)
    assert first.message.params == {"name": "é"} and second.message.id == 8


@anyio_tests
async def test_the_end_of_stdin_ends_the_read_stream_after_an_unterminated_last_line(pipes, fds):
    os.write(pipes.client_in, request(1) + request(2).rstrip(b"\n"))
    fds.close(pipes.client_in)
    async with fd_transport(pipes.stdin, pipes.stdout) as (inbound, _):
        with anyio.fail_after(10):
            received = [item async for item in inbound]
    assert [m.message.id for m in received] == [1, 2]


@anyio_tests
async def test_a_line_that_is_no_json_rpc_message_becomes_an_exception_and_reading_goes_on(pipes):
    os.write(pipes.client_in, b"not json\n" + b'{"jsonrpc": "2.0", "id": 1}\n' + request(2))
    async with fd_transport(pipes.stdin, pipes.stdout) as (inbound, _):
        bad, incomplete, good = await take(inbound, 3)
    assert isinstance(bad, ValidationError) and isinstance(incomplete, ValidationError)
    assert good.message.id == 2


@anyio_tests
async def test_a_line_longer_than_the_limit_is_dropped_and_reported_once(pipes):
    async with fd_transport(pipes.stdin, pipes.stdout, max_message_bytes=1000) as (inbound, _):
        for _ in range(20):  # 20 reads' worth of one line, never ending within the limit
            os.write(pipes.client_in, b"y" * 500)
            await anyio.sleep(0.005)
        os.write(pipes.client_in, b"y\n" + request(1))
        too_long, after = await take(inbound, 2)
    assert isinstance(too_long, MessageTooLong) and "longer than 1000 bytes" in str(too_long)
    assert after.message.id == 1


@given(
    lines=st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    unterminated=st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
    cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=6),
)
def test_the_line_splitter_finds_the_same_lines_however_the_bytes_are_cut(lines, unterminated, cuts):
    limit = 6
    stream = b"".join(line + b"\n" for line in lines) + unterminated
    bounds = sorted({0, len(stream), *(cut for cut in cuts if cut < len(stream))})
    splitter, found = LineSplitter(limit), []
    for start, end in pairwise(bounds):
        found += splitter.feed(stream[start:end])
        assert len(splitter.end() or b"") <= limit  # what it keeps stays within the limit
    expected = [line if len(line) <= limit else "too long" for line in lines]
    if len(unterminated) > limit:
        expected.append("too long")
    assert [line if isinstance(line, bytes) else "too long" for line in found] == expected
    assert splitter.end() == (unterminated if 0 < len(unterminated) <= limit else None)


@anyio_tests
async def test_regular_files_as_stdin_and_stdout_are_read_and_written_directly(tmp_path, fds):
    (tmp_path / "in").write_bytes(request(1) + request(2))
    stdin, stdout = fds.add(os.open(tmp_path / "in", os.O_RDONLY), os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT))
    async with fd_transport(stdin, stdout) as (inbound, outbound):
        with anyio.fail_after(10):
            received = [item async for item in inbound]
        for message in received:
            await outbound.send(response(message.message.id))
    assert [m.message.id for m in received] == [1, 2]
    assert (tmp_path / "out").read_bytes() == sdk_line(response(1)) + sdk_line(response(2))


@anyio_tests
async def test_a_terminal_as_stdout_gets_a_message_larger_than_its_buffer_whole(pipes, fds):
    controller, terminal = fds.add(*pty.openpty())
    tty.setraw(terminal)  # bytes as they are: no "\n" -> "\r\n"
    big = response(1, "z" * 300_000)
    async with fd_transport(pipes.stdin, terminal) as (_, outbound):
        await outbound.send(big)
        with anyio.fail_after(30):
            (line,) = await anyio.to_thread.run_sync(read_lines, controller, 1, 0.001, 4096)
    assert line == sdk_line(big)


@anyio_tests
async def test_a_terminal_as_stdin_is_read_until_its_other_side_closes(pipes, fds):
    controller, terminal = fds.add(*pty.openpty())
    tty.setraw(terminal)
    async with fd_transport(terminal, pipes.stdout) as (inbound, _):
        os.write(controller, request(1))
        (first,) = await take(inbound, 1)
        os.write(controller, request(2))
        await anyio.sleep(0.05)
        fds.close(controller)  # the terminal's reads now fail with EIO: the end of the input
        with anyio.fail_after(10):
            rest = [item async for item in inbound]
    assert [m.message.id for m in [first, *rest]] == [1, 2]


@anyio_tests
async def test_input_after_the_session_stopped_reading_ends_the_reading_quietly(pipes):
    async with fd_transport(pipes.stdin, pipes.stdout) as (inbound, _):
        inbound.close()  # as the SDK's dispatcher does when its loop ends
        os.write(pipes.client_in, request(1))
        await anyio.sleep(0.05)


@anyio_tests
async def test_one_socket_serves_both_ways_and_a_read_error_ends_the_input():
    """A socket as stdin and stdout at once. The client closes it with an answer unread, so the
    server's next read fails (ECONNRESET): that ends the input as the end of stdin would."""
    server_end, client = socket.socketpair()
    with server_end, client:
        async with fd_transport(server_end.fileno(), server_end.fileno()) as (inbound, outbound):
            client.sendall(request(1))
            (first,) = await take(inbound, 1)
            await outbound.send(response(1))
            await anyio.sleep(0.05)  # the answer waits, unread, in the client's socket
            client.close()
            with anyio.fail_after(10):
                rest = [item async for item in inbound]
    assert first.message.id == 1 and rest == []


@anyio_tests
async def test_each_descriptor_gets_its_own_blocking_mode_back(pipes):
    os.set_blocking(pipes.stdout, False)  # as its owner left it
    async with fd_transport(pipes.stdin, pipes.stdout) as (_, outbound):
        assert not os.get_blocking(pipes.stdin) and not os.get_blocking(pipes.stdout)
        await outbound.send(response(1))
    assert os.get_blocking(pipes.stdin) and not os.get_blocking(pipes.stdout)


@anyio_tests
async def test_leaving_writes_out_what_the_server_sent_before_it_left(pipes):
    big = response(1, "w" * 1024 * 1024)
    lines: list[list[bytes]] = []

    async def slow_client() -> None:
        lines.append(await anyio.to_thread.run_sync(read_lines, pipes.client_out, 1, 0.005))

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_client)
        async with fd_transport(pipes.stdin, pipes.stdout) as (_, outbound):
            await outbound.send(big)  # taken by the writer, far from written: the pipe holds 64 KiB
    assert lines == [[sdk_line(big)]]


@anyio_tests
async def test_when_the_client_closes_stdout_messages_are_dropped_and_the_input_ends(pipes, fds, caplog):
    caplog.set_level(logging.INFO, logger="mcptb.server")
    fds.close(pipes.client_out)
    async with fd_transport(pipes.stdin, pipes.stdout) as (inbound, outbound):
        await outbound.send(response(1))
        await outbound.send(response(2))  # dropped, without an error
        with anyio.fail_after(10):
            assert [item async for item in inbound] == []  # although stdin is still open
    assert "cannot write to the MCP client" in caplog.text


SERVE_A_LITTLE = """
import os, subprocess, sys
import anyio, mcp_types as types
from mcp.shared.message import SessionMessage
from mcp_server._stdio import stdio_transport

async def main():
    async with stdio_transport() as (inbound, outbound):
        print("stray print", flush=True)
        os.write(1, b"stray write\\n")
        subprocess.run([sys.executable, "-c", "import sys; print('stray child, stdin', repr(sys.stdin.read()))"])
        print("stray print, still buffered at exit")
        async for item in inbound:
            await outbound.send(SessionMessage(types.JSONRPCResponse(jsonrpc="2.0", id=item.message.id, result={})))
        await outbound.aclose()
    print("after serving", flush=True)

anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.real
def test_while_serving_nothing_but_protocol_reaches_stdout_and_both_fds_are_restored(backend, fds, tmp_path):
    """fds 0 and 1 are the test's own pipe ends, so the test sees their open file descriptions' modes."""
    stdin, client_in = fds.add(*os.pipe())
    client_out, stdout = fds.add(*os.pipe())
    os.write(client_in, request(1) + request(2))
    fds.close(client_in)
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}  # sys.stdout too
    with open(tmp_path / "stderr", "wb") as stderr:
        done = subprocess.run(
            [sys.executable, "-c", SERVE_A_LITTLE, backend], stdin=stdin, stdout=stdout, stderr=stderr, cwd=ROOT,
            env=buffered, timeout=60, check=False,
        )  # fmt: skip
    stdin_blocking, stdout_blocking = os.get_blocking(stdin), os.get_blocking(stdout)
    fds.close(stdout)
    output, errors = read_lines(client_out, 3), (tmp_path / "stderr").read_text()
    assert done.returncode == 0, errors
    assert [json.loads(line).get("id") for line in output[:2]] == [1, 2]
    assert output[2] == b"after serving\n"
    for stray in ("stray print\n", "stray write\n", "stray child, stdin ''\n", "stray print, still buffered"):
        assert stray in errors
    assert stdin_blocking and stdout_blocking
