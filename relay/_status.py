"""``GET /status``: what the status page shows, as JSON - the workers, the requests in flight, the last
model requests and the totals of today and of the last seven days, per model and per MCP client.
Never prompt or answer text: ids, model names, states, times and token counts.

Totals are the relay's own counts since it started plus, when the usage ledger is on, its rows from
the days before (read once, when the relay starts); ``mcptb-relay usage`` shows the ledger's longer
history.
"""

from __future__ import annotations

import time
from typing import Any

from ._jobs import Snapshot
from ._stats import DAYS, Stats

STATES = {"queued": "queued", "assigned": "with a worker", "started": "answering", "done": "done"}


def status(snapshot: Snapshot, stats: Stats, started: float, version: str) -> dict[str, Any]:
    now = time.time()
    return {
        "relay": {"version": version, "uptime_seconds": round(now - started, 1), "now": now},
        "workers": [
            {
                "id": w.id,
                "client": w.info.client_name or "-",
                "client_version": w.info.client_version or "",
                "protocol_version": w.info.protocol_version or "",
                "modes": w.info.modes,
                "agent": w.info.agent or ("serving" if "agent" in w.info.modes else "-"),
                "serving": w.info.agent != "away",
                "free_slots": w.free_slots,
                "in_flight": w.in_flight,
                "connected_seconds": round(now - w.connected_at, 1),
            }
            for w in snapshot.workers
        ],
        "in_flight": [
            {
                "id": j.id,
                "api": j.api,
                "model": j.model,
                "state": STATES[j.state],
                "age_seconds": round(j.age, 1),
                "worker": j.worker_id,
            }
            for j in snapshot.jobs
        ],
        "recent": [row._asdict() for row in reversed(stats.recent)],
        "totals": {"today": _totals(stats, 1), "week": _totals(stats, DAYS)},
    }


def _totals(stats: Stats, days: int) -> dict[str, list[dict[str, Any]]]:
    since = time.strftime("%Y-%m-%d", time.localtime(time.time() - (days - 1) * 86400))
    by: dict[str, dict[str, list[int]]] = {"model": {}, "client": {}}
    for (day, model, client), figures in stats.daily.items():
        if day < since:
            continue
        for kind, name in (("model", model), ("client", client)):
            sums = by[kind].setdefault(name, [0, 0, 0, 0])
            for i, figure in enumerate(figures):
                sums[i] += figure
    return {
        kind: [
            {"name": name, "requests": r, "tokens_in": i, "tokens_out": o, "handed": h}
            for name, (r, i, o, h) in sorted(sums.items(), key=lambda item: -item[1][0])
        ]
        for kind, sums in by.items()
    }
