"""The era gate (``mcp_server/_era.py``) message by message, and what a 2026-era sampling client makes
the worker tell the relay (``ClientState.sampling_unavailable``). The real clients meeting both are in
``test_era_clients.py``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import mcp_types as types
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from mcp_server._client import ClientState, Settings
from mcp_server._era import EraGate
from relay._broker import Broker
from relay._unserved import queue_timeout_error, sampling_notes


def _meta(caps: dict[str, Any], version: str = "2026-07-28") -> dict[str, Any]:
    return {
        "_meta": {
            types.PROTOCOL_VERSION_META_KEY: version,
            types.CLIENT_INFO_META_KEY: {"name": "fastmcp", "version": "4.2.3"},
            types.CLIENT_CAPABILITIES_META_KEY: caps,
        }
    }


def _request(method: str, params: dict[str, Any] | None = None, id: int = 1) -> types.JSONRPCRequest:
    return types.JSONRPCRequest(jsonrpc="2.0", id=id, method=method, params=params)


DISCOVER_SAMPLING = _request("server/discover", _meta({"sampling": {}}))


def test_the_opening_discover_of_a_sampling_client_is_refused_naming_only_handshake_versions():
    gate = EraGate(wants_sampling=True)
    refusal = gate.inbound(DISCOVER_SAMPLING)
    assert refusal is not None and refusal.id == 1
    assert refusal.error.code == types.UNSUPPORTED_PROTOCOL_VERSION == -32022
    data = types.UnsupportedProtocolVersionErrorData.model_validate(refusal.error.data)
    assert data.supported == list(HANDSHAKE_PROTOCOL_VERSIONS) and data.requested == "2026-07-28"
    assert "--mode agent" in refusal.error.message
    assert not gate.settled
    init = _request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {"sampling": {}}}, id=2)
    assert gate.inbound(init) is None and gate.settled


def test_clients_without_sampling_and_mode_agent_keep_the_2026_era():
    no_sampling = _request("server/discover", _meta({}))  # Claude Code, Codex: no sampling declared
    assert EraGate(wants_sampling=True).inbound(no_sampling) is None
    assert EraGate(wants_sampling=False).inbound(DISCOVER_SAMPLING) is None


def test_only_the_opening_request_can_be_refused_and_only_once():
    gate = EraGate(wants_sampling=True)
    assert gate.inbound(types.JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized")) is None
    assert gate.inbound(DISCOVER_SAMPLING) is not None
    assert gate.inbound(DISCOVER_SAMPLING) is None and gate.settled  # it insists on 2026-07-28: let it
    gate = EraGate(wants_sampling=True)
    assert gate.inbound(_request("tools/list", _meta({"sampling": {}}))) is None  # pinned: no discover
    assert gate.inbound(DISCOVER_SAMPLING) is None  # the era is settled


def _learn(state: ClientState, method: str, version: str, caps: types.ClientCapabilities) -> None:
    session = SimpleNamespace(client_params=None, protocol_version=None, client_capabilities=caps)
    meta = _meta({})["_meta"]
    state.learn(SimpleNamespace(session=session, meta=meta, protocol_version=version, method=method))  # type: ignore[arg-type]


def test_a_sampling_client_that_stays_in_2026_tells_the_relay_why_it_has_no_sampling(caplog):
    state = ClientState(Settings(concurrency=4, model_name=None, mode="auto"))
    changes: list[int] = []
    state.on_change = lambda: changes.append(1)
    sampling = types.ClientCapabilities(sampling=types.SamplingCapability())
    _learn(state, "tools/list", "2026-07-28", sampling)
    _learn(state, "tools/call", "2026-07-28", sampling)
    info = state.info()
    assert info.modes == ["agent"] and info.concurrency == 0
    assert info.sampling_unavailable is not None
    assert info.sampling_unavailable.startswith(
        "fastmcp 4.2.3 speaks MCP 2026-07-28, where background sampling is not available"
    )
    assert [r.message for r in caplog.records].count("no background sampling: " + info.sampling_unavailable) == 1
    assert changes == [1]

    strict = ClientState(Settings(concurrency=4, model_name=None, mode="sampling"))
    _learn(strict, "tools/list", "2026-07-28", sampling)
    assert strict.info().sampling_unavailable == info.sampling_unavailable  # --mode sampling warns too
    assert sum(r.message.startswith("no background sampling: ") for r in caplog.records) == 2
    agent = ClientState(Settings(concurrency=4, model_name=None, mode="agent"))
    _learn(agent, "tools/list", "2026-07-28", sampling)
    assert agent.info().sampling_unavailable is None  # sampling not wanted: nothing is missing
    handshake = ClientState(Settings(concurrency=4, model_name=None, mode="auto"))
    _learn(handshake, "initialize", "2025-11-25", sampling)
    assert handshake.info().sampling_unavailable is None  # sampling comes after notifications/initialized
    quiet = ClientState(Settings(concurrency=4, model_name=None, mode="auto"))
    _learn(quiet, "tools/list", "2026-07-28", types.ClientCapabilities())
    assert quiet.info().sampling_unavailable is None  # Claude Code: never declared sampling


def test_the_relay_collects_each_distinct_note_once():
    broker = Broker(max_queue=8, socket_path="/tmp/x.sock")
    assert sampling_notes(broker.workers.values()) == ""
    state = ClientState(Settings(concurrency=4, model_name=None, mode="auto"))
    _learn(state, "tools/list", "2026-07-28", types.ClientCapabilities(sampling=types.SamplingCapability()))
    note = state.sampling_unavailable
    assert note is not None
    for _ in range(2):
        broker.add_worker(state.info(), lambda line: True)
    broker.add_worker(ClientState(Settings(concurrency=4, model_name=None, mode="auto")).info(), lambda line: True)
    assert sampling_notes(broker.workers.values()) == state.sampling_unavailable
    waited = queue_timeout_error(1.0, broker.workers.values()).message  # the 504 of a request nobody took
    assert waited.startswith(
        f"No MCP server or agent picked up this request within 1 s (relay --queue-timeout): {note}"
    )
