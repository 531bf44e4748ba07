"""What the relay has served since it started, counted from each request's log record: the figures of
``/metrics`` and the status page (its last requests are the same rows the usage ledger keeps). No
content: only routes, model names, statuses, times and token counts.

Labels come from a fixed set (the relay's routes, statuses, error kinds) except the model name,
which the caller chooses: at most :data:`MAX_MODELS` distinct names, each cut to :data:`relay._ledger.MAX_TEXT`
characters, get their own series, the rest count under ``other``, so a caller cannot grow the relay's
memory with made-up names.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from ._ledger import MAX_TEXT, Row
from ._responder import RequestLog

MAX_MODELS = 64
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Upper bounds of the time histograms, in seconds: a cached answer to a ten-minute agent turn."""
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
"""Upper bounds of the token histograms (OpenTelemetry's advice for ``gen_ai.client.token.usage``)."""
RECENT = 100
"""Finished model requests the status page lists."""
DAYS = 7
"""Days of per-model and per-client totals kept in memory (the status page's week)."""
REFUSALS = frozenset({401, 403, 408, 413, 429, 431, 503})
"""Statuses that mean the relay refused the request (its reason is the error kind)."""


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    """Observations at or under each bound (not cumulative; rendered cumulative)."""
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        i = bisect.bisect_left(self.bounds, value)  # the first bound at or above the value
        if i < len(self.counts):
            self.counts[i] += 1


Key = tuple[str, ...]
"""A series' label values, in the order of its family's label names below (flat: cheap to count)."""
REQUEST_LABELS = ("api", "model", "status", "outcome")
REFUSAL_LABELS = ("status", "reason")
MODEL_LABELS = ("api", "model")
TOKEN_LABELS = ("api", "model", "gen_ai_token_type", "count")


def _series(table: dict[Key, Histogram], key: Key, bounds: tuple[float, ...]) -> Histogram:
    """The histogram of ``key``, made on its first observation (not one thrown away per request)."""
    histogram = table.get(key)
    if histogram is None:
        histogram = table[key] = Histogram(bounds)
    return histogram


@dataclass
class Stats:
    requests: Counter[Key] = field(default_factory=Counter)
    refusals: Counter[Key] = field(default_factory=Counter)
    durations: dict[Key, Histogram] = field(default_factory=dict)
    first_byte: dict[Key, Histogram] = field(default_factory=dict)
    queue_wait: dict[Key, Histogram] = field(default_factory=dict)
    tokens: dict[Key, Histogram] = field(default_factory=dict)
    handed: Counter[Key] = field(default_factory=Counter)
    """Characters of model requests handed to serving agents, by route and model."""
    request_classes: Counter[str] = field(default_factory=Counter)
    """Model requests by Claude Code's ``x-claude-code-request-class`` (when it sends one)."""
    recent: deque[Row] = field(default_factory=lambda: deque(maxlen=RECENT))
    """The last model requests, newest last: what the status page lists (no content)."""
    daily: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    """(day, model, client) -> [requests, tokens in, tokens out, characters handed to agents], for the
    last :data:`DAYS` days (with the usage ledger's rows from before the relay started)."""
    _models: set[str] = field(default_factory=set)
    _today: str = ""
    _day_start: float = 0.0
    _day_end: float = 0.0

    def finished(self, record: RequestLog, seconds: float, row: Row | None) -> None:
        """One request ended (its response written, or its caller gone), ``seconds`` after it began;
        ``row``: what it was, for a model request (None for any other)."""
        model = self._model(record.model)
        status = str(record.status)
        self.requests[(record.api, model, status, record.result)] += 1
        if record.status in REFUSALS:
            self.refusals[(status, record.kind or "-")] += 1
        if row is None:
            return  # not a model request: no time or token series for it
        if record.request_class:
            self.request_classes[record.request_class] += 1
        self._remember(row, model)
        api = (record.api, model)
        _series(self.durations, api, SECONDS_BUCKETS).observe(seconds)
        if row.first_byte is not None:
            _series(self.first_byte, api, SECONDS_BUCKETS).observe(row.first_byte)
        if record.queue_wait is not None:
            _series(self.queue_wait, api, SECONDS_BUCKETS).observe(record.queue_wait)
        counted = "counted" if row.counted else "estimated"
        _series(self.tokens, (*api, "input", counted), TOKEN_BUCKETS).observe(row.tokens_in)
        _series(self.tokens, (*api, "output", counted), TOKEN_BUCKETS).observe(row.tokens_out)
        if row.handed:
            self.handed[api] += row.handed

    def add_history(self, rows: list[tuple[str, str, str, int, int, int, int]]) -> None:
        """Totals from before the relay started: (day, model, client, requests, tokens in, tokens out,
        characters handed), as :func:`relay._usage_report.daily` reads them from the usage ledger."""
        for day, model, client, *figures in rows:
            totals = self.daily.setdefault((day, self._model(model), client), [0, 0, 0, 0])
            for i, figure in enumerate(figures):
                totals[i] += figure

    def _remember(self, row: Row, model: str) -> None:
        self.recent.append(row)
        now, client = row.at, row.client
        day = self._day(now)
        if (day, model, client) not in self.daily:
            oldest = time.strftime("%Y-%m-%d", time.localtime(now - DAYS * 86400))
            for key in [key for key in self.daily if key[0] <= oldest]:
                del self.daily[key]
        totals = self.daily.setdefault((day, model, client), [0, 0, 0, 0])
        totals[0] += 1
        totals[1] += row.tokens_in
        totals[2] += row.tokens_out
        totals[3] += row.handed or 0

    def _day(self, now: float) -> str:
        """The local date of ``now``: worked out again only when ``now`` leaves the day last worked out."""
        if not self._day_start <= now < self._day_end:
            t = time.localtime(now)
            self._today = time.strftime("%Y-%m-%d", t)
            self._day_start = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
            self._day_end = time.mktime((t.tm_year, t.tm_mon, t.tm_mday + 1, 0, 0, 0, 0, 0, -1))
        return self._today

    def _model(self, name: str) -> str:
        name = name[:MAX_TEXT]
        if name in self._models:
            return name
        if len(self._models) < MAX_MODELS:
            self._models.add(name)
            return name
        return "other"
