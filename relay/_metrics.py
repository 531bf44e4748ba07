"""``GET /metrics``: the relay's figures in the Prometheus text format (version 0.0.4), written here.

Names follow the OpenTelemetry GenAI semantic conventions where one exists
(``gen_ai_server_request_duration_seconds``, ``gen_ai_server_time_to_first_token_seconds``,
``gen_ai_client_token_usage``); the rest are ``mcptb_*``. Token figures carry ``count="estimated"``
or ``count="counted"``. Series come from :class:`relay._stats.Stats` (since the relay started) and
the broker's :class:`relay._jobs.Snapshot` (now).
"""

from __future__ import annotations

from collections import Counter

from ._jobs import Snapshot
from ._ledger import Ledger
from ._stats import MODEL_LABELS, REFUSAL_LABELS, REQUEST_LABELS, TOKEN_LABELS, Histogram, Key, Stats

Labels = tuple[tuple[str, str], ...]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = (*labels, *extra)
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help: str) -> None:
        self.lines += [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, labels: Labels, value: float) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histograms(self, name: str, names: tuple[str, ...], series: dict[Key, Histogram]) -> None:
        for key, histogram in sorted(series.items()):
            labels = tuple(zip(names, key, strict=True))
            running = 0
            for bound, count in zip(histogram.bounds, histogram.counts, strict=True):
                running += count
                self.lines.append(f"{name}_bucket{_labels(labels, (('le', _number(bound)),))} {running}")
            self.lines.append(f"{name}_bucket{_labels(labels, (('le', '+Inf'),))} {histogram.count}")
            self.lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.total)}")
            self.lines.append(f"{name}_count{_labels(labels)} {histogram.count}")


def render(stats: Stats, snapshot: Snapshot, ledger: Ledger | None) -> bytes:
    text = _Text()
    text.family(
        "mcptb_requests_total", "counter", "HTTP requests the relay finished, by route, model, status and outcome."
    )
    for key, count in sorted(stats.requests.items()):
        text.sample("mcptb_requests_total", tuple(zip(REQUEST_LABELS, key, strict=True)), count)
    text.family("mcptb_refusals_total", "counter", "Requests the relay refused, by status and reason (error kind).")
    for key, count in sorted(stats.refusals.items()):
        text.sample("mcptb_refusals_total", tuple(zip(REFUSAL_LABELS, key, strict=True)), count)
    text.family("gen_ai_server_request_duration_seconds", "histogram", "Model requests: time until the answer ended.")
    text.histograms("gen_ai_server_request_duration_seconds", MODEL_LABELS, stats.durations)
    text.family(
        "gen_ai_server_time_to_first_token_seconds", "histogram", "Model requests: time until the first byte answered."
    )
    text.histograms("gen_ai_server_time_to_first_token_seconds", MODEL_LABELS, stats.first_byte)
    text.family("mcptb_queue_wait_seconds", "histogram", "Model requests: time waiting before a worker took them.")
    text.histograms("mcptb_queue_wait_seconds", MODEL_LABELS, stats.queue_wait)
    text.family(
        "gen_ai_client_token_usage", "histogram", "Model requests: input and output tokens, counted or estimated."
    )
    text.histograms("gen_ai_client_token_usage", TOKEN_LABELS, stats.tokens)
    text.family(
        "mcptb_agent_handed_characters_total",
        "counter",
        "Model requests served by an agent: characters of them handed to it (what it reads, the user pays for).",
    )
    for key, count in sorted(stats.handed.items()):
        text.sample("mcptb_agent_handed_characters_total", tuple(zip(MODEL_LABELS, key, strict=True)), count)
    text.family(
        "mcptb_claude_code_requests_total",
        "counter",
        "Model requests by Claude Code's x-claude-code-request-class (main, subagent, compaction, auxiliary...).",
    )
    for request_class, count in sorted(stats.request_classes.items()):
        text.sample("mcptb_claude_code_requests_total", (("request_class", request_class),), count)
    text.family("mcptb_requests_in_flight", "gauge", "Model requests taken by a worker and not finished.")
    text.sample("mcptb_requests_in_flight", (), snapshot.in_flight)
    text.family("mcptb_requests_queued", "gauge", "Model requests waiting for a worker.")
    text.sample("mcptb_requests_queued", (), snapshot.queue_depth)
    workers: Counter[Labels] = Counter()
    for worker in snapshot.workers:
        mode = "+".join(worker.info.modes) or "none"
        agent = worker.info.agent or ("serving" if "agent" in worker.info.modes else "-")
        workers[(("mode", mode), ("agent", agent))] += 1
    text.family("mcptb_workers", "gauge", "Connected MCP servers, by how they answer and whether an agent serves.")
    for labels, count in sorted(workers.items()):
        text.sample("mcptb_workers", labels, count)
    if ledger is not None:
        text.family(
            "mcptb_usage_rows_lost_total", "counter", "Usage ledger rows not written: disk failed, or too many waiting."
        )
        text.sample("mcptb_usage_rows_lost_total", (("reason", "disk"),), ledger.failed)
        text.sample("mcptb_usage_rows_lost_total", (("reason", "backlog"),), ledger.dropped)
    return ("\n".join(text.lines) + "\n").encode()
