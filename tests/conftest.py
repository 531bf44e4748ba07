"""Fixtures for the relay and ``mcptb-server``: in-process by default (``relay``, ``mcp_worker``: see
_inprocess.py), real processes where the process boundary is the point (``relay_process``,
``relay_factory``, ``mcp_worker_process``: the relay on port 0 with its own socket, ``mcptb-server``
over stdio under the ``mcp`` SDK's ClientSession, 2025 handshake).

Every async test runs twice, on asyncio and on trio; the relay and the MCP server run on the same
backend as the test. HTTP clients that are tied to asyncio or are synchronous run in a thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import mcp_types as types
import pytest
from claude_code.harness import ClaudeCode, FakeModelProcess, skip_reason, start_fake_model
from mcp import ClientSession, StdioServerParameters, stdio_client

from _eventually import eventually
from _http_client import get_json
from _inprocess import InProcessRelay, InProcessWorker, relay_in_process, worker_in_process
from _scripted import ScriptedModel

ROOT = Path(__file__).resolve().parent.parent
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="mcptb-state-")
"""Relays this suite starts keep their usage ledger here, not in the home of whoever runs the tests."""


def litellm() -> ModuleType:
    """litellm, imported on first use (the import alone takes seconds) with its bundled cost map: it
    would otherwise try to fetch one from the internet, with seconds of retries and warnings offline."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as module

    return module


def say(config: pytest.Config, line: str) -> None:
    """Print past pytest's capture, on the real stderr (loud skips, measured timings)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        print(f"\n{line}", file=sys.__stderr__, flush=True)


CLAUDE_FOR_BACKEND = {"asyncio": "newest", "trio": "2.1.197"}
"""The Claude Code CLI version each backend's run of a test uses. Every test with the real CLI runs on
both backends and so with both versions, as these two pairs rather than all four combinations: the
backend is the relay's and mcptb-server's (whose code on each backend the in-process suites test in
full), the version is the client's (its MCP era and request shapes), and the two meet only through
the protocol. That halves the slowest part of the suite."""


@pytest.fixture
def claude(request: pytest.FixtureRequest, anyio_backend: str, tmp_path: Path) -> Iterator[ClaudeCode]:
    """The real Claude Code CLI (``newest`` on asyncio, ``2.1.197`` on trio) with a fresh HOME and
    project directory; skipped, loudly, where node/npm or the installed CLI are missing."""
    label = CLAUDE_FOR_BACKEND[anyio_backend]
    reason = skip_reason(label)
    if reason is not None:
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)
    cc = ClaudeCode(label, tmp_path / "claude")
    try:
        yield cc
    finally:
        cc.close()


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[Callable[..., FakeModelProcess]]:
    started: list[FakeModelProcess] = []

    def start(**env: str) -> FakeModelProcess:
        started.append(start_fake_model(tmp_path / f"fake{len(started)}", **env))
        return started[-1]

    try:
        yield start
    finally:
        for fake in started:
            fake.stop()


REAL_FIXTURES = frozenset(
    {"relay_factory", "relay_process", "mcp_worker_process", "claude", "fake_model", "proxy", "desktop_relay",
     "stub_claude", "run_serve", "litellm_proxies"}
)  # fmt: skip
"""Fixtures that start real programs: a test that uses one is in the full tier (``real``)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The two tiers: a test is ``real`` when it is marked so, uses a fixture that starts a program, or
    needs node; ``./just test`` runs the others (``-m "not real"``), ``./just test-all`` everything."""
    for item in items:
        if REAL_FIXTURES & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("node"):
            item.add_marker(pytest.mark.real)


@pytest.fixture(autouse=True)
def _programs_only_in_the_full_tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test of the fast tier that starts a program fails, saying to mark it ``real`` (or, better, to test
    the logic in process): the fast tier stays fast because nothing in it can start one."""
    if request.node.get_closest_marker("real"):
        return

    def refuse(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        raise AssertionError(
            f"{request.node.nodeid} starts a program ({args!r}): test it in process, or mark it "
            "@pytest.mark.real (the full tier, ./just test-all)"
        )

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Any]:
    """A home and a runtime directory as a desktop session has them (``agent_clis/harness.py``)."""
    from agent_clis.harness import Desktop

    made = Desktop.make(tmp_path / "home")
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(anyio_backend: str) -> str:
    return anyio_backend


@dataclass
class RelayProcess:
    url: str
    socket: str
    proc: subprocess.Popen[str]
    log_lines: list[str] = field(default_factory=list)
    api_key: str | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def rss_mib(pid: int) -> float:
    """A process's resident set size (VmRSS, Linux), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS:")).split()[1]) / 1024


def posts_since(relay: RelayProcess, since: int, path: str = "/") -> list[str]:
    """The relay's access-log lines for POSTs to ``path`` (a prefix) since log line ``since``."""
    return [line for line in relay.log_lines[since:] if "mcptb.relay.access" in line and f" POST {path}" in line]


async def log_so_far(relay: RelayProcess) -> str:
    """The relay's log with every line it wrote before now: its stderr is read by a thread, so a line
    written before the banner may not be in ``relay.log`` yet. A request's access line comes after all
    of them on the same pipe."""
    await get_health(relay)
    await eventually(lambda: " GET /health " in relay.log, what="the relay's log caught up")
    return relay.log


async def posts_logged(relay: RelayProcess, since: int, count: int, path: str = "/") -> list[str]:
    """:func:`posts_since` once it has ``count`` lines, or after 10 s: the relay logs a request after its
    answer, so a caller can hold the answer before the line is there. (A retry comes before the answer,
    so a test that then finds more than ``count`` lines has found retries.)"""
    with contextlib.suppress(AssertionError):
        await eventually(lambda: len(posts_since(relay, since, path)) >= count, timeout=10)
    return posts_since(relay, since, path)


def short_socket_dir() -> str:
    """Unix socket paths must stay under ~100 bytes, so not under pytest's long tmp_path."""
    return tempfile.mkdtemp(prefix="mcptb-")


def start_relay(
    backend: str,
    socket: str,
    *args: str,
    env: dict[str, str] | None = None,
    nofile: tuple[int, int] | None = None,
    command: list[str] | None = None,
) -> RelayProcess:
    """A relay process; ``nofile`` is its (soft, hard) RLIMIT_NOFILE from the start; ``command`` runs
    another relay than this checkout's (an installed ``mcptb-relay``)."""
    command = command or [sys.executable, "-m", "relay"]
    proc = subprocess.Popen(
        [*command, "--port", "0", "--socket", socket, "--backend", backend, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        preexec_fn=None if nofile is None else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile),
    )
    assert proc.stdout is not None and proc.stderr is not None
    banner = proc.stdout.readline()
    if not banner:
        raise RuntimeError(f"relay did not start: {proc.stderr.read()}")
    url = banner.split()[3]
    key = args[args.index("--api-key") + 1] if "--api-key" in args else None
    relay = RelayProcess(url=url, socket=socket, proc=proc, api_key=key)

    def drain(stream: Any) -> None:
        for line in stream:
            relay.log_lines.append(line)

    threading.Thread(target=drain, args=(proc.stderr,), daemon=True).start()
    threading.Thread(target=drain, args=(proc.stdout,), daemon=True).start()
    return relay


@pytest.fixture
def relay_factory(backend: str) -> Iterator[Any]:
    started: list[RelayProcess] = []
    dirs: list[str] = []

    def factory(
        *args: str, socket: str | None = None, env: dict[str, str] | None = None, nofile: tuple[int, int] | None = None
    ) -> RelayProcess:
        if socket is None:
            dirs.append(short_socket_dir())
            socket = os.path.join(dirs[-1], "relay.sock")
        relay = start_relay(backend, socket, *args, env=env, nofile=nofile)
        started.append(relay)
        return relay

    yield factory
    for relay in started:
        relay.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def litellm_proxies(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real litellm proxies and their relays, once per session (tests/_litellm_proxy.py); skipped,
    loudly, when litellm[proxy] is not installed."""
    from _litellm_proxy import running_proxies, skip_reason

    reason = skip_reason()
    if reason is not None:
        say(request.config, f"*** {reason} ***")
        pytest.skip(reason)
    with running_proxies(tmp_path_factory.mktemp("litellm-proxy")) as proxies:
        say(
            request.config,
            f"[litellm proxies] ready in {max(proxies.default.startup, proxies.chat_flag.startup):.1f} s",
        )
        yield proxies


@pytest.fixture
def relay_process(relay_factory: Any) -> RelayProcess:
    """A relay process with short keep-alives so those paths are quick to test."""
    return relay_factory("--keepalive-interval", "0.5")


@pytest.fixture
async def relay(backend: str) -> AsyncIterator[InProcessRelay]:
    """The relay serving in the test's event loop, with short keep-alives."""
    async with relay_in_process(keepalive_interval=0.5) as served:
        yield served


def server_params(socket: str, backend: str, *args: str, command: list[str] | None = None) -> StdioServerParameters:
    """``mcptb-server`` of this checkout over stdio, or the ``command`` given (an installed one)."""
    program, *prefix = command or [sys.executable, "-m", "mcp_server"]
    return StdioServerParameters(
        command=program,
        args=[
            *prefix,
            "--socket",
            socket,
            "--backend",
            backend,
            "--reconnect-max-delay",
            "0.5",
            *args,
        ],
        cwd=str(ROOT),
        env={"PYTHONUNBUFFERED": "1"},
    )


@dataclass
class Worker:
    session: ClientSession
    model: ScriptedModel
    stderr_path: str
    init: types.InitializeResult

    @property
    def stderr(self) -> str:
        return Path(self.stderr_path).read_text()

    @property
    def instructions(self) -> str | None:
        return self.init.instructions


@asynccontextmanager
async def mcp_worker(
    relay: RelayProcess | InProcessRelay,
    backend: str,
    *args: str,
    model: ScriptedModel | None = None,
    sampling: bool = True,
    sampling_tools: bool = False,
    client_name: str = "pytest-client",
    wait_ready: bool = True,
) -> AsyncIterator[InProcessWorker]:
    """``mcptb-server`` (with these command-line ``args``) in this event loop, its MCP client the mcp
    SDK's in-memory Client with the 2025 handshake."""
    async with worker_in_process(
        relay.socket, *args, model=model, sampling=sampling, sampling_tools=sampling_tools, client_name=client_name
    ) as worker:
        if wait_ready:
            await wait_for_workers(relay, 1, sampling=sampling)
        yield worker


@asynccontextmanager
async def mcp_worker_process(
    relay: RelayProcess | InProcessRelay,
    backend: str,
    *args: str,
    model: ScriptedModel | None = None,
    sampling: bool = True,
    sampling_tools: bool = False,
    client_name: str = "pytest-client",
    wait_ready: bool = True,
    command: list[str] | None = None,
) -> AsyncIterator[Worker]:
    """``mcptb-server`` (this checkout's, or ``command``) spawned over stdio by the mcp SDK's
    ClientSession (2025 handshake)."""
    model = model or ScriptedModel()
    capabilities = types.SamplingCapability(tools=types.SamplingToolsCapability()) if sampling_tools else None
    fd, stderr_path = tempfile.mkstemp(prefix="mcptb-server-", suffix=".log")
    os.close(fd)
    with open(stderr_path, "w") as errlog:
        params = server_params(relay.socket, backend, *args, command=command)
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(
                read,
                write,
                sampling_callback=model if sampling else None,
                sampling_capabilities=capabilities,
                client_info=types.Implementation(name=client_name, version="1.0"),
                read_timeout_seconds=30,
            ) as session:
                init = await session.initialize()
                worker = Worker(session, model, stderr_path, init)
                if wait_ready:
                    await wait_for_workers(relay, 1, sampling=sampling)
                yield worker
    os.unlink(stderr_path)


async def wait_for_workers(
    relay: RelayProcess | InProcessRelay, count: int, sampling: bool = True, timeout: float = 20
) -> dict[str, Any]:
    """Poll /health until ``count`` workers are connected (with free sampling slots, if asked)."""

    async def connected() -> dict[str, Any] | None:
        health = await get_health(relay)
        workers = health["workers"]
        ready = [w for w in workers if not sampling or ("sampling" in w["modes"] and w["free_slots"] > 0)]
        return health if len(workers) == count and len(ready) == count else None

    return await eventually(connected, timeout=timeout, what=f"{count} worker(s) connected")


async def queue_depth(relay: RelayProcess | InProcessRelay, depth: int) -> bool:
    """At least ``depth`` requests wait in the relay's queue."""
    return bool((await get_health(relay))["queue_depth"] >= depth)


async def no_workers(relay: RelayProcess | InProcessRelay) -> bool:
    return not (await get_health(relay))["workers"]


async def get_health(relay: RelayProcess | InProcessRelay) -> dict[str, Any]:
    """The relay's /health, with its key when it has one (without, it shows only its status)."""
    headers = {"authorization": f"Bearer {relay.api_key}"} if relay.api_key else None
    health: dict[str, Any] = await get_json(relay.url + "/health", headers)
    return health


def chat_body(text: str = "hello", **extra: Any) -> bytes:
    return json.dumps({"model": "test-model", "messages": [{"role": "user", "content": text}], **extra}).encode()


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """A blocking call (a synchronous SDK) in a worker thread, so that the relay in this event loop runs."""
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
