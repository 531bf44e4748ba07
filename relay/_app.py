"""Routing and the endpoints. Knows HTTP requests and the broker, not sockets.

Access (``_access``) is decided on the head, before the body is read. Everything under ``/v1``, the
status page and ``/metrics`` need the key when one is configured (``/metrics`` not with
``--metrics-public``); ``/health`` then shows only its status to a request without it, and ``/``
without ``Accept: text/html`` answers who it is.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import anyio

from shared_protocol import End, wire_json
from shared_protocol._settings import package_version

from ._access import Access
from ._adapter import Adapter, Exchange, Route
from ._affinity import session_key
from ._answer import AnswerEvent, KeepAlive, follow
from ._api import APIS, api_for, api_paths
from ._broker import Broker
from ._collect import Answer
from ._config import Config
from ._errors import RelayError, error_headers
from ._heap import HeapRelease
from ._jobs import NO_CALLER, Caller, Job
from ._ledger import Ledger
from ._metrics import CONTENT_TYPE as METRICS_TYPE
from ._metrics import render as render_metrics
from ._models import MODEL_PREFIX, find_model, model_list
from ._page import PAGE
from ._remote_images import fetch_remote_images
from ._responder import HttpRequest, RequestHead, Responder
from ._stats import Stats
from ._status import status
from ._store import ConversationStore
from ._usage import ESTIMATED, request_tokens

log = logging.getLogger("mcptb.relay")
content_log = logging.getLogger("mcptb.relay.content")

_PAGE_HEADERS = [
    ("cache-control", "no-store"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
]
"""The status page loads nothing from anywhere, may fetch only from the relay, and is never framed."""
_SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
"""No ``x-mcptb-usage``: a stream's head goes out before the worker says whether it counted the tokens."""


def _route(path: str) -> str:
    """The route a path is answered by (``/v1/models/{id}`` for every model's own path)."""
    path = path.rstrip("/") or "/"
    return "/v1/models/{id}" if path.startswith(MODEL_PREFIX) else path


IGNORED_TOOLS_HEADER = "x-mcptb-ignored-tools"
_MAX_IGNORED_LISTED = 20


REQUEST_CLASSES = frozenset({"main", "subagent", "workflow", "compaction", "auxiliary"})
"""Claude Code's ``x-claude-code-request-class`` values (its gateway protocol); any other counts as ``other``."""


def _caller(request: RequestHead, body_key: str | None) -> Caller:
    """What the headers (and the body's session key) say of who is asking (see :class:`~relay._jobs.Caller`)."""
    agent = request.header("user-agent") or ""
    session = request.header("x-claude-code-session-id")
    affinity = session_key(request.headers, body_key)
    request_class = request.header("x-claude-code-request-class")
    if request_class is not None and request_class not in REQUEST_CLASSES:
        request_class = "other"
    if affinity is None and request_class is None and not agent.startswith("claude-cli/"):
        return NO_CALLER
    claude_code = agent.startswith("claude-cli/") or session is not None
    return Caller(claude_code=claude_code, session=session, affinity=affinity, request_class=request_class)


def ignored_tools_headers(ignored: tuple[str, ...]) -> list[tuple[str, str]]:
    """``x-mcptb-ignored-tools: web_search,file_search``: the tools the caller offered that did not
    reach the model (hosted tools, which only the API vendor's servers run), so a caller can tell.
    Each name once, in order, as visible ASCII without commas; at most 20 listed, then ``+N more``."""
    names = list(dict.fromkeys(re.sub(r"[^!-~]|,", "?", name)[:64] for name in ignored))
    if not names:
        return []
    listed = names[:_MAX_IGNORED_LISTED]
    if len(names) > len(listed):
        listed.append(f"+{len(names) - len(listed)} more")
    return [(IGNORED_TOOLS_HEADER, ",".join(listed))]


Handler = Callable[[HttpRequest, Responder], Awaitable[None]]


class App:
    def __init__(self, config: Config, broker: Broker) -> None:
        self.config = config
        self.broker = broker
        self.store = ConversationStore(config.store_conversations, config.store_bytes, config.max_body_bytes)
        """Recent conversations, for continuations: adapters read it while parsing, :meth:`answer` writes it."""
        self.started = time.time()
        self.answering = 0
        """Requests being answered now (streams open, or whole answers being written)."""
        self._idle: anyio.Event | None = None
        self.heap = HeapRelease(busy=lambda: self.answering > 0)
        self.stats = Stats()
        """What was served since the relay started (``/metrics``), fed by the server as each request ends."""
        self.ledger: Ledger | None = None
        """The usage ledger, when the server keeps one (its lost rows are counted on ``/metrics``)."""
        self._routes: dict[str, dict[str, Handler]] = {
            "/": {"GET": self.root, "HEAD": self.root},
            "/health": {"GET": self.health},
            "/v1/models": {"GET": self.models},
            "/v1/models/{id}": {"GET": self.model},
            "/api/hello": {"GET": self.hello, "HEAD": self.hello},
            "/metrics": {"GET": self.metrics},
            "/status": {"GET": self.status},
        }
        for api in APIS:
            for route in api.routes:
                self._routes.setdefault(route.path, {})[route.method] = self._api_handler(api, route)
        self._served = ", ".join([*api_paths(), "/v1/models", "/health"]) + " and /metrics"
        self._open = {"/", "/health", "/api/hello"}
        """Routes that answer without the API key (what they show without it reveals nothing)."""
        self.access = Access(config)
        self._version = ""

    def admit(self, head: RequestHead) -> RelayError | None:
        """Why a request is refused on its head alone (access, route, method, key), before its body is read."""
        refused = self.access.verdict(head)
        if refused is not None:
            return refused
        try:
            if (head.header("upgrade") or "").lower() == "websocket":
                raise RelayError(
                    "websocket_unsupported",
                    "This relay speaks its APIs over plain HTTP, not WebSocket: POST /v1/responses (Codex: "
                    "supports_websockets = false in the provider's config skips this try).",
                )
            methods = self._routes.get(_route(head.path))
            if methods is None:
                raise RelayError(
                    "unknown_path", f"Unknown path {head.method} {head.path}. This relay serves {self._served}."
                )
            if head.method not in methods:
                raise RelayError(
                    "method_not_allowed",
                    f"Method {head.method} is not allowed on {head.path}; use {', '.join(methods)}.",
                    allow=tuple(methods),
                )
            public = head.path.rstrip("/") == "/metrics" and self.config.metrics_public
            if head.path not in self._open and not public:
                self.access.check_key(head)
        except RelayError as error:
            return error
        return None

    async def __call__(self, request: HttpRequest, responder: Responder) -> None:
        """Answer an admitted request."""
        route = _route(request.path)
        handler = self._routes[route][request.method]
        responder.record.api = route
        try:
            await handler(request, responder)
        except RelayError as error:
            await self._send_error(responder, api_for(request.path), error)

    # --- endpoints ----------------------------------------------------------------------------

    async def health(self, request: HttpRequest, responder: Responder) -> None:
        if not self.access.has_key(request):  # with --api-key, only the key shows pids, clients and the socket
            await self._send_json(responder, 200, {"status": "ok"})
            return
        now = time.time()
        snapshot = self.broker.snapshot()
        workers = [
            {
                "id": w.id,
                "client": {"name": w.info.client_name, "version": w.info.client_version},
                "pid": w.info.pid,
                "protocol_version": w.info.protocol_version,
                "modes": w.info.modes,
                "tools": w.info.tools,
                "models": w.info.models,
                "concurrency": w.info.concurrency,
                "agent": w.info.agent,
                "sampling_unavailable": w.info.sampling_unavailable,
                "free_slots": w.free_slots,
                "in_flight": w.in_flight,
                "connected_seconds": round(now - w.connected_at, 1),
            }
            for w in snapshot.workers
        ]
        await self._send_json(
            responder,
            200,
            {
                "status": "ok",
                "uptime_seconds": round(now - self.started, 1),
                "socket": self.config.socket,
                "workers": workers,
                "queue_depth": snapshot.queue_depth,
                "in_flight": snapshot.in_flight,
                "stored_conversations": {
                    "count": len(self.store),
                    "bytes": self.store.bytes,
                    "max_count": self.store.max_entries,
                    "max_bytes": self.store.max_bytes,
                },
            },
        )

    async def metrics(self, request: HttpRequest, responder: Responder) -> None:
        body = render_metrics(self.stats, self.broker.snapshot(), self.ledger)
        await responder.send(200, body, METRICS_TYPE, [])

    async def models(self, request: HttpRequest, responder: Responder) -> None:
        await self._send_json(responder, 200, model_list(self.broker.snapshot()))

    async def model(self, request: HttpRequest, responder: Responder) -> None:
        """One model, as the openai SDK's ``models.retrieve`` and the anthropic SDK's ``models.retrieve`` ask."""
        model_id = unquote(request.path.rstrip("/")[len(MODEL_PREFIX) :])
        found = find_model(self.broker.snapshot(), model_id)
        if found is not None:
            await self._send_json(responder, 200, found)
            return
        message = (
            f"The model `{model_id}` does not exist: no connected MCP client serves it (GET /v1/models lists them)."
        )
        api = api_for("/v1/messages" if request.header("anthropic-version") else request.path)  # the asker's shape
        await self._send_error(responder, api, RelayError("unknown_model", message))

    async def hello(self, request: HttpRequest, responder: Responder) -> None:
        """Claude Code's connection-warming ``HEAD /api/hello`` (LLM gateway protocol): nothing to say."""
        await self._send_json(responder, 200, {"status": "ok"})

    async def root(self, request: HttpRequest, responder: Responder) -> None:
        if "text/html" not in (request.header("accept") or ""):
            # Claude Code probes its base URL with HEAD / before the first request.
            await self._send_json(responder, 200, {"name": "mcp-token-bridge", "status": "ok"})
        elif not self.access.has_key(request):  # a browser asks the user for the key (any user name)
            responder.record.kind = "invalid_api_key"
            challenge = [("www-authenticate", 'Basic realm="mcptb-relay", charset="UTF-8"')]
            await responder.send(401, b"The relay's --api-key is the password.\n", "text/plain", challenge)
        else:
            await responder.send(200, PAGE, "text/html; charset=utf-8", _PAGE_HEADERS)

    async def status(self, request: HttpRequest, responder: Responder) -> None:
        self._version = self._version or package_version()
        body = status(self.broker.snapshot(), self.stats, self.started, self._version)
        await self._send_json(responder, 200, body, [("cache-control", "no-store")])

    def _api_handler(self, api: Adapter, route: Route) -> Handler:
        count_tokens = route.count_tokens

        async def handle(request: HttpRequest, responder: Responder) -> None:
            exchange = api.parse(request.body, self.store)
            if count_tokens is None:
                exchange = await fetch_remote_images(exchange, self.config, len(request.body), self.broker.refusal)
                await self.answer(api, exchange, responder, _caller(request, exchange.session_key))
            else:
                body = count_tokens(request_tokens(exchange.request))
                headers = [ESTIMATED, *ignored_tools_headers(exchange.ignored_tools)]
                await self._send_json(responder, 200, body, headers)

        return handle

    async def answer(self, api: Adapter, exchange: Exchange, responder: Responder, caller: Caller) -> None:
        """The one request flow of every API: queue the exchange, follow its job, accumulate the answer and
        write it as the API's JSON or stream."""
        record = responder.record
        record.model = exchange.request.model or "-"
        record.request_class = caller.request_class or ""
        record.tokens_in = 0  # a model request (a row in the ledger), with the tokens of what a model saw
        input_tokens = request_tokens(exchange.request)  # once: it walks the whole prompt
        if exchange.ignored_tools:
            tools = ", ".join(dict.fromkeys(exchange.ignored_tools))
            log.info("%s: tools left out, the MCP client's model cannot use them: %s", record.request_id, tools)
        if self.config.log_content:
            content_log.info("%s prompt: %s", record.request_id, wire_json(exchange.request.to_wire()))
        job = self.broker.submit(record.request_id, exchange.request, self.config.request_timeout, caller, record.api)
        # a stream's encoders never read the text back: keep it only to store it or to log it
        keep_text = not exchange.stream or exchange.keep is not None or self.config.log_content
        answer = Answer(model=exchange.request.model or "unknown", keep_text=keep_text)
        ended = "the caller disconnected"
        self.answering += 1
        try:
            if exchange.stream:
                await self._stream(api, exchange, job, answer, responder, input_tokens)
            else:
                async for event in follow(job, self.config.keepalive_interval, self.broker.catch_up):
                    if not isinstance(event, KeepAlive):
                        answer.add(event)
                self._log_answer(record.request_id, answer)
                kept = self._keep(exchange, answer)
                usage = answer.usage(input_tokens)
                body = wire_json(exchange.completion(answer, usage)).encode()
                answer.release_text()  # while a slow caller takes it, the encoded body is the one copy held
                headers = [usage.header, *ignored_tools_headers(exchange.ignored_tools)]
                try:
                    await responder.send(200, body, "application/json", headers)
                except BaseException:
                    self._unkeep(kept)
                    raise
        except RelayError as error:
            ended = f"the relay gave up: {error.message}"
            raise
        finally:
            record.worker, record.queue_wait = job.worker_id, job.waited
            self.broker.cancel(job, ended)
            self.answering -= 1
            if self.answering == 0 and self._idle is not None:
                self._idle.set()
            self.heap.answered(answer.chars + job.unread)
            worker = self.broker.workers.get(job.worker_id)
            record.client = (worker.info.client_name or "-") if worker is not None else "-"
            record.handed = job.handed
            if answer.started:
                usage = answer.usage(input_tokens)
                record.tokens_in, record.tokens_out, record.tokens_counted = (
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.counted,
                )
                record.answered_by = answer.model

    def connection_closed(self) -> None:
        """An HTTP connection ended (its frames, and what a cancelled write still held, are gone)."""
        self.heap.connection_closed()

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until no answer is being written."""
        if self.answering:
            self._idle = anyio.Event()
            with anyio.move_on_after(timeout):
                await self._idle.wait()

    async def _stream(
        self, api: Adapter, exchange: Exchange, job: Job, answer: Answer, responder: Responder, input_tokens: int
    ) -> None:
        encoder = exchange.stream_encoder(input_tokens)
        headers = _SSE_HEADERS + ignored_tools_headers(exchange.ignored_tools)
        events = follow(job, self.config.keepalive_interval, self.broker.catch_up)
        # The status line waits for the first event, at most one keep-alive interval, so that a failure
        # before the model's first output (nobody serving, the model failed, a declined request) is a
        # real status with its retry advice, not an error event after a 200: Claude Code answers an error
        # event by asking again without streaming, which would cost the user another model turn.
        first = await anext(events)
        await responder.start(200, headers, encoder.first(answer))

        async def write(event: AnswerEvent) -> None:
            if isinstance(event, KeepAlive):
                await responder.write(api.keepalive)
                return
            answer.add(event)
            if not isinstance(event, End):
                data = encoder.event(event, answer)
                if data:
                    await responder.write(data)
                return
            self._log_answer(job.id, answer)
            kept = self._keep(exchange, answer)
            try:
                await responder.write(encoder.finish(answer, answer.usage(input_tokens)))
            except BaseException:
                self._unkeep(kept)
                raise

        try:
            await write(first)
            async for event in events:
                await write(event)
        except RelayError as error:
            log.warning("%s: failed mid-stream: %s %s", job.id, error.shape.status, error.message)
            responder.record.outcome = f"{error.shape.status}:{error.kind}"  # the status line said 200
            self.broker.cancel(job, f"the relay gave up: {error.message}")
            await responder.write(encoder.error(error, answer))
        await responder.end()

    # --- helpers ------------------------------------------------------------------------------

    def _keep(self, exchange: Exchange, answer: Answer) -> str | None:
        """Store a whole answer's conversation for continuations, before the caller has the end of the
        answer (and so may continue it); the key, for :meth:`_unkeep` should that write fail. Failed
        answers are never stored."""
        if exchange.keep is None:
            return None
        if not self.store.put(exchange.keep.key, exchange.keep.answered(answer)):  # too large with its images
            log.warning("%s: too large for the conversation store; it cannot be continued", exchange.keep.key)
        return exchange.keep.key

    def _unkeep(self, key: str | None) -> None:
        """The answer's end did not reach its caller (it hung up, or took no bytes): nobody holds its id."""
        if key is not None:
            self.store.forget(key)

    def _log_answer(self, request_id: str, answer: Answer) -> None:
        if self.config.log_content:
            calls = [(c.name, c.arguments) for c in answer.tool_calls]
            content_log.info("%s answer: %r tool_calls=%r", request_id, answer.content, calls)

    async def _send_json(
        self, responder: Responder, status: int, body: Any, headers: list[tuple[str, str]] | None = None
    ) -> None:
        await responder.send(status, wire_json(body).encode(), "application/json", headers or [])

    async def _send_error(self, responder: Responder, api: Adapter, error: RelayError) -> None:
        if responder.started:  # cannot change the status any more; end what was started
            return
        responder.record.kind = error.kind
        headers = error_headers(error)
        await self._send_json(responder, error.shape.status, api.error_json(error), headers)
