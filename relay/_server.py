"""Process wiring: the TCP listener for HTTP callers, the Unix listener for workers, the broker.

The HTTP side admits at most ``max_connections`` connections (making room by closing idle or dripping
ones first, see ``_admission``); one more gets an immediate 503 and is closed, so an overload is
visible instead of a hang. The worker socket admits at most
``max_workers`` connections, counted from the moment they are accepted (a connection that never says
hello is closed after ``HELLO_TIMEOUT``). Both limits fit the open-file limit (``_fd_budget``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import signal
import time
from collections.abc import Callable

import anyio
import anyio.abc

from shared_protocol import default_socket_path

from . import _fd_budget as fd_budget
from ._accept import accept_forever, raw_sockets
from ._admission import Admission
from ._api import error_page
from ._app import App
from ._broker import Broker
from ._config import Config, server_command
from ._errors import RelayError, error_headers
from ._http import serve_connection
from ._jobs import Timing
from ._ledger import Ledger, row_of
from ._responder import RequestLog, Responder
from ._socket import SocketSetupError, forget_default, listen, record_default
from ._stats import DAYS, Stats
from ._timer import Timer
from ._worker_link import refuse_worker, serve_worker

log = logging.getLogger("mcptb.relay")
access = logging.getLogger("mcptb.relay.access")


def finisher(stats: Stats, ledger: Ledger | None) -> Callable[[RequestLog], None]:
    """What happens as each request ends: its access-log line, its count in ``stats``, and for a model
    request its row in the usage ledger."""

    def finished(record: RequestLog) -> None:
        seconds = time.perf_counter() - record.started
        access_log(record, seconds)
        row = None if record.tokens_in is None else row_of(record, seconds)  # a model request
        stats.finished(record, seconds, row)
        if ledger is not None and row is not None:
            ledger.add(row)

    return finished


def access_log(record: RequestLog, seconds: float) -> None:
    first_byte = record.first_byte_seconds
    ttfb = "-" if first_byte is None else f"{first_byte * 1000:.1f}ms"
    access.info(
        "%s %s %s model=%s%s worker=%s status=%s%s ttfb=%s dur=%.1fms bytes=%d",
        record.request_id,
        record.method,
        record.path,
        record.model,
        f" class={record.request_class}" if record.request_class else "",
        record.worker,
        record.status,
        f" outcome={record.outcome}" if record.outcome else "",
        ttfb,
        seconds * 1000,
        record.bytes_sent,
    )


async def serve(config: Config, on_ready: Callable[[str, str], None] | None = None) -> None:
    budget = fd_budget.apply(config.max_connections, config.max_workers)
    if budget.warning:
        log.warning("%s", budget.warning)
    config = dataclasses.replace(config, max_connections=budget.max_connections)
    timer = Timer()
    broker = Broker(
        max_queue=config.max_queue,
        socket_path=config.socket,
        max_unread=config.max_unread,
        timing=Timing.of(config),
        clock=timer.clock,
        on_earlier=timer.earlier,
    )
    app = App(config, broker)
    ledger = app.ledger = Ledger(config.usage_db, config.usage_days) if config.usage_db else None
    finished = finisher(app.stats, ledger)
    try:
        tcp = await anyio.create_tcp_listener(local_host=config.host, local_port=config.port, reuse_port=False)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        where = f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}"
        raise SocketSetupError(
            f"{where} is already in use: a relay may be running there already (see http://{where}/health), or "
            "another program has the port. Stop it, or pass another --port (--port 0 picks a free one)."
        ) from None
    unix = await listen(config.socket)
    recorded = config.socket == default_socket_path()  # the default (or MCPTB_SOCKET), not a --socket of its own
    if recorded and (problem := record_default(config.socket)) is not None:
        log.warning("%s; MCP servers started without XDG_RUNTIME_DIR/TMPDIR may need --socket", problem)
    sockname = tcp.extra(anyio.abc.SocketAttribute.local_address)
    host, port = sockname[0], sockname[1]
    display_host = f"[{host}]" if ":" in str(host) else host
    url = f"http://{display_host}:{port}"
    admission = Admission(config.max_connections, config.max_body_memory, time.monotonic)
    links = 0

    async def handle_http(stream: anyio.abc.SocketStream) -> None:
        with anyio.CancelScope() as scope:
            slot = admission.connect(close=scope.cancel)
            if slot is None:
                await _refuse_connection(stream, config, finished)
                return
            try:
                await serve_connection(stream, app, error_page, config, finished, admission, slot)
            finally:
                admission.disconnect(slot)
        app.connection_closed()

    async def handle_worker(stream: anyio.abc.SocketStream) -> None:
        nonlocal links
        if links >= config.max_workers:  # counted before the hello: silent connections count too
            async with stream:
                await refuse_worker(
                    stream,
                    "busy",
                    f"this relay already has {config.max_workers} MCP servers connected (relay --max-workers)",
                )
            return
        links += 1
        try:
            await serve_worker(stream, broker, config)
        finally:
            links -= 1

    try:
        async with tcp, unix, anyio.create_task_group() as tg:
            await tg.start(
                _stop_on_signal, tg.cancel_scope, app, config
            )  # before the banner: a SIGTERM then is handled
            tg.start_soon(timer.run, broker)
            tg.start_soon(app.heap.run)
            if ledger is not None and os.path.exists(ledger.path):
                tg.start_soon(_ledger_week, ledger.path, app.stats, time.time())
            if on_ready:
                on_ready(url, config.socket)
            for sock in raw_sockets(unix):
                tg.start_soon(accept_forever, sock, handle_worker, "worker socket")
            for sock in raw_sockets(tcp):
                tg.start_soon(accept_forever, sock, handle_http, "HTTP")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(config.socket)
        if recorded:
            forget_default(config.socket)
        if ledger is not None:
            ledger.close()  # the rows that wait: one short write
        log.info("relay stopped")


async def _ledger_week(path: str, stats: Stats, started: float) -> None:
    """The status page's totals of the week before this start, from the usage ledger (read in a thread;
    a ledger that cannot be read leaves the page with this run's own totals, and says why once)."""

    def read() -> list[tuple[str, str, str, int, int, int, int]]:
        import sqlite3

        from ._usage_report import daily

        try:
            rows = daily(path, started - DAYS * 86400, started)
            # a file not quite ours: only the rows that read as ours
            return [r for r in rows if all(isinstance(v, str) for v in r[:3]) and all(type(v) is int for v in r[3:])]
        except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
            log.warning("usage ledger %s: cannot read the last days' totals for the status page (%s)", path, exc)
            return []

    stats.add_history(await anyio.to_thread.run_sync(read))


async def _stop_on_signal(
    scope: anyio.CancelScope, app: App, config: Config, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    """SIGTERM or SIGINT: every open answer ends with its API's error event (a stream) or error (a
    whole answer), within --drain-timeout; then the relay stops."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            log.info("%s received; ending %d open answer(s), then stopping", name, app.answering)
            app.broker.stop(f"The relay is stopping ({name}); nothing more will come for this request.")
            await app.drain(config.drain_timeout)
            scope.cancel()
            return


async def _refuse_connection(
    stream: anyio.abc.SocketStream, config: Config, finished: Callable[[RequestLog], None]
) -> None:
    import h11

    async with stream:
        conn = h11.Connection(h11.SERVER)
        error = RelayError(
            "too_many_connections",
            f"Too many connections (relay --max-connections {config.max_connections}).",
            retry_after=1,
        )
        status = error.shape.status
        record = RequestLog(status=status, kind=error.kind)
        responder = Responder(conn, stream, record, config.send_timeout)
        # The request was not read: answer at once and close.
        with anyio.move_on_after(2):
            try:
                await responder.send(
                    status, error_page(error, ""), "application/json", [("connection", "close"), *error_headers(error)]
                )
            except Exception:
                pass
        finished(record)


def banner(url: str, socket: str) -> str:
    """The start banner: where the relay listens (the first line, which tools parse), then the next step
    for each kind of client, one line each."""
    socket_arg = f"--socket {socket}"
    return (
        f"mcptb-relay listening on {url} (OpenAI API at {url}/v1) - workers connect on {socket}\n"
        f"  answer with Claude Code: {server_command('mcptb-serve')} {socket_arg}   (in another terminal)\n"
        f"    or register it:        claude mcp add --scope user mcptb -- {server_command()} {socket_arg}\n"
        f"  OpenAI SDK, curl:        base URL {url}/v1\n"
        f"  Anthropic, Claude Code:  base URL {url} (no /v1), ANTHROPIC_BASE_URL\n"
        f'  litellm:                 model="openai/any", api_base="{url}/v1"'
    )


def print_banner(url: str, socket: str) -> None:
    print(banner(url, socket), flush=True)
