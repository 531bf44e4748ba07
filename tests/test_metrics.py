"""``GET /metrics``: the Prometheus text the relay writes, read back with prometheus_client's own parser,
against the requests each test made (the relay in process, a worker in process, both backends)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from _http_client import post, request
from _inprocess import relay_in_process
from conftest import chat_body, mcp_worker

SECRET = "the-secret-prompt-words"


async def scrape(relay: Any, headers: dict[str, str] | None = None) -> dict[str, list[Any]]:
    response = await request(relay.url, "GET", "/metrics", headers=headers)
    assert response.status == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            families.setdefault(sample.name, []).append(sample)
    return families


def total(samples: list[Any], **labels: str) -> float:
    return sum(s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items()))


async def test_the_counters_are_the_requests_made_per_api_and_status(relay, backend):
    messages = json.dumps({"model": "m2", "max_tokens": 20, "messages": [{"role": "user", "content": SECRET}]})
    async with mcp_worker(relay, backend):
        for _ in range(3):
            assert (await post(relay.url, "/v1/chat/completions", chat_body(SECRET, model="m1"))).status == 200
        assert (await post(relay.url, "/v1/chat/completions", chat_body(SECRET, model="m1", stream=True))).status == 200
        assert (await post(relay.url, "/v1/messages", messages.encode())).status == 200
        assert (await post(relay.url, "/v1/responses", b'{"model": "m3", "input": "REFUSE it"}')).status == 422
        assert (await post(relay.url, "/v1/chat/completions", b"{")).status == 400
        assert (await request(relay.url, "GET", "/nope")).status == 404
        metrics = await scrape(relay)
    requests = metrics["mcptb_requests_total"]
    chat = "/v1/chat/completions"
    assert total(requests, api=chat, model="m1", status="200", outcome="ok") == 4
    assert total(requests, api="/v1/messages", model="m2", status="200") == 1
    assert total(requests, api="/v1/responses", model="m3", status="422", outcome="refused") == 1
    assert total(requests, api=chat, status="400", outcome="invalid_json") == 1
    assert total(requests, api="-", status="404", outcome="unknown_path") == 1
    assert total(requests) - total(requests, api="/health") == 8  # the fixture's /health polls aside
    tokens = metrics["gen_ai_client_token_usage_count"]
    assert total(tokens, api=chat, model="m1", gen_ai_token_type="input", count="estimated") == 4
    assert total(tokens, gen_ai_token_type="output") == 6  # the six requests that reached the model
    assert total(metrics["gen_ai_client_token_usage_sum"], model="m1", gen_ai_token_type="output") > 0
    assert total(metrics["gen_ai_server_request_duration_seconds_count"], api=chat) == 4
    assert total(metrics["gen_ai_server_time_to_first_token_seconds_count"], api="/v1/messages") == 1
    assert total(metrics["mcptb_queue_wait_seconds_count"]) == 6  # every request a worker took
    assert 0 <= total(metrics["mcptb_queue_wait_seconds_sum"]) < 5
    assert total(metrics["mcptb_requests_in_flight"]) == 0 and total(metrics["mcptb_requests_queued"]) == 0
    assert total(metrics["mcptb_workers"], mode="sampling+agent") == 1


async def test_no_prompt_or_answer_text_is_in_the_metrics(relay, backend):
    async with mcp_worker(relay, backend):
        await post(relay.url, "/v1/chat/completions", chat_body(SECRET))
        response = await request(relay.url, "GET", "/metrics")
    assert SECRET.encode() not in response.body and b"echo:" not in response.body


async def test_made_up_model_names_do_not_grow_the_series_without_bound(backend):
    async with relay_in_process(worker_grace=0) as relay:
        for n in range(70):
            await post(relay.url, "/v1/chat/completions", chat_body("hi", model=f"made-up-{n}"))
        metrics = await scrape(relay)
    models = {s.labels["model"] for s in metrics["mcptb_requests_total"] if s.labels["api"] != "/metrics"}
    assert len(models) == 65 and "other" in models  # 64 names, then "other"
    assert total(metrics["mcptb_refusals_total"], status="503", reason="no_worker") == 70


@pytest.mark.parametrize("public", [False, True])
async def test_with_an_api_key_the_metrics_need_it_unless_public(backend, public):
    settings: dict[str, Any] = {"api_key": "sk-metrics", "metrics_public": public}
    async with relay_in_process(**settings) as relay:
        without = await request(relay.url, "GET", "/metrics/")  # the route's own spelling, and with a slash
        with_key = await request(relay.url, "GET", "/metrics", headers={"authorization": "Bearer sk-metrics"})
        foreign = await request(relay.url, "GET", "/metrics", headers={"origin": "https://evil.example"})
        metrics = await scrape(relay, {"authorization": "Bearer sk-metrics"})
    assert without.status == (200 if public else 401) and with_key.status == 200 and foreign.status == 403
    refusals = metrics["mcptb_refusals_total"]
    assert total(refusals, status="403", reason="forbidden_origin") == 1
    assert total(refusals, status="401", reason="invalid_api_key") == (0 if public else 1)


async def test_every_family_the_docs_list_is_in_the_output(backend, tmp_path):
    from _doc_blocks import ROOT

    table = (ROOT / "docs" / "metrics.md").read_text().split("<!-- metrics table:", 1)[1].split("\n\n", 1)[0]
    documented = {row.split("`")[1] for row in table.splitlines()[3:]}
    async with relay_in_process(usage_db=str(tmp_path / "usage.sqlite3")) as relay, mcp_worker(relay, backend):
        await post(relay.url, "/v1/chat/completions", chat_body("hi"))
        response = await request(relay.url, "GET", "/metrics")
    emitted = {family.name for family in text_string_to_metric_families(response.body.decode())}
    emitted |= {name + "_total" for name in emitted}  # the parser names a counter family without _total
    assert documented <= emitted, documented - emitted


def test_a_histogram_puts_a_value_under_the_first_bound_at_or_above_it():
    from relay._stats import Histogram

    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 7.0):
        histogram.observe(value)
    assert histogram.counts == [2, 2] and histogram.count == 5 and histogram.total == pytest.approx(8.65)
