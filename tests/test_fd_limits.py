"""Open-file limits (hardening 8): the relay raises its soft RLIMIT_NOFILE to fit its limits, lowers
--max-connections where the hard limit is too low, survives EMFILE in its accept loops, and counts
worker-socket connections from accept, so silent ones cannot take every descriptor."""

from __future__ import annotations

import errno
import os
import resource
import select
import socket
import time
from typing import Any

import anyio
import pytest

from relay._accept import accept_forever
from relay._fd_budget import Budget, BudgetError, plan

from _eventually import eventually
from _http_client import get_json, post
from conftest import chat_body, log_so_far, mcp_worker

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/limits"), reason="reads /proc/<pid>/limits (Linux)")


def open_files_limit(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        line = next(line for line in limits if line.startswith("Max open files"))
    return int(line.split()[3])


def own_limit_at_least(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            pytest.skip(f"this test opens {n} sockets; the hard open-file limit here is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


async def test_the_relay_raises_its_soft_open_file_limit_to_fit_its_limits(relay_factory: Any) -> None:
    relay = relay_factory(nofile=(256, 4096))
    assert open_files_limit(relay.proc.pid) == 256 + 64 + 64  # --max-connections + --max-workers + reserve
    assert "lowered" not in await log_so_far(relay)


async def test_a_low_hard_limit_lowers_max_connections_and_400_connections_do_not_kill_the_relay(
    relay_factory: Any,
) -> None:
    """macOS's default soft limit is 256; here the hard one is too, so the relay cannot raise it."""
    relay = relay_factory(nofile=(256, 256))
    assert "--max-connections lowered from 256 to 128" in await log_so_far(relay)
    own_limit_at_least(600)
    held = []
    try:
        for _ in range(400):
            held.append(socket.create_connection(("127.0.0.1", relay.port)))
        # The relay keeps serving: it holds 128 of them (a silent one may make room for a newer one
        # after a second, when accepting 400 takes that long on a busy machine: closed, no answer); every
        # other one gets a 503 and is closed.
        answers, open_ones = _answers(held, expected=400 - 128)
        assert len(answers) == 400 - 128, f"{len(answers)} connections answered or closed"
        assert not select.select(open_ones, [], [], 0.5)[0]  # the 128 it holds stay open
        assert set(answers) <= {"503", "closed"}, set(answers)
        assert answers.count("503") > 0
        assert relay.proc.poll() is None
    finally:
        for sock in held:
            sock.close()
    health = await eventually(lambda: _health_or_none(relay), what="the relay answering again")
    assert health["status"] == "ok"
    assert relay.proc.poll() is None


def _answers(socks: list[socket.socket], expected: int, within: float = 30.0) -> tuple[list[str], list[socket.socket]]:
    """How the connections the relay does not hold ended ("503" or "closed"), once ``expected`` of them
    have or when ``within`` seconds have passed; and those still open."""
    waiting = {sock.fileno(): sock for sock in socks}
    answers: list[str] = []
    deadline = time.monotonic() + within
    while len(answers) < expected and time.monotonic() < deadline:
        readable, _, _ = select.select(list(waiting), [], [], max(0.0, deadline - time.monotonic()))
        for fd in readable:
            try:
                data = waiting.pop(fd).recv(4096)
            except OSError:  # reset
                data = b""
            answers.append("503" if b" 503 " in data else "closed" if not data else repr(data[:60]))
    return answers, list(waiting.values())


async def _health_or_none(relay: Any) -> Any:
    """The relay's health once it answers it (not a 503 while the closed connections are still counted)."""
    try:
        health = await get_json(relay.url + "/health")
    except OSError:
        return None
    return health if "status" in health else None


async def test_1100_silent_worker_connections_are_refused_past_max_workers_and_a_worker_still_serves(
    relay_factory: Any, backend: str
) -> None:
    relay = relay_factory(nofile=(1024, 1024))
    own_limit_at_least(1400)
    held = []
    try:
        for _ in range(1100):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(relay.socket)
            held.append(sock)
        # The 65th and later are refused at once, without waiting for a hello.
        last = held[-1]
        last.settimeout(10)
        assert b'"busy"' in last.recv(4096)
        assert relay.proc.poll() is None
    finally:
        for sock in held:
            sock.close()
    async with mcp_worker(relay, backend):
        response = await post(relay.url, "/v1/chat/completions", chat_body("hello"))
    assert response.status == 200, response.body
    assert relay.proc.poll() is None


class _ExhaustedListener(socket.socket):
    """A real listening socket whose accept() fails with EMFILE a few times, as under the limit."""

    failures = 3

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return super().accept()


async def test_the_accept_loop_backs_off_on_emfile_and_serves_the_connection_that_waited(backend: str) -> None:
    listener = _ExhaustedListener(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    served = anyio.Event()

    async def handle(stream: anyio.abc.SocketStream) -> None:
        await stream.send(b"served")
        served.set()

    with listener:
        async with anyio.create_task_group() as tg:
            tg.start_soon(accept_forever, listener, handle, "test")
            client = await anyio.connect_tcp("127.0.0.1", listener.getsockname()[1])
            async with client:
                assert await client.receive() == b"served"
            await served.wait()
            assert listener.failures == 0
            tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("soft", "hard", "expected"),
    [
        (4096, 4096, Budget(4096, 256)),  # fits: untouched
        (256, resource.RLIM_INFINITY, Budget(384, 256)),  # macOS: soft 256, hard unlimited
        (256, 300, Budget(300, 172, "x")),  # raised as far as allowed, connections lowered to fit
    ],
)
def test_the_budget_raises_the_soft_limit_first_and_lowers_connections_only_to_fit(
    soft: int, hard: int, expected: Budget
) -> None:
    budget = plan(soft, hard, max_connections=256, max_workers=64)
    assert (budget.soft, budget.max_connections) == (expected.soft, expected.max_connections)
    assert (budget.warning is None) == (expected.warning is None)


def test_a_limit_with_no_room_for_connections_is_a_start_up_error() -> None:
    with pytest.raises(BudgetError, match="ulimit -n 384"):
        plan(100, 100, max_connections=256, max_workers=64)
