"""Unit tests of mcptb-server pieces that need no MCP client: the relay-link session's bookkeeping
and the neutral -> sampling conversion."""

from __future__ import annotations

import anyio
import pytest

from mcp_server._client import ClientState, Settings, model_id_for
from mcp_server._relay_link import RelayLink, _Session
from mcp_server._sampling import to_sampling_messages
from shared_protocol import Message, Ready, TextBlock, ToolResultBlock, ToolUseBlock, Update

pytestmark = pytest.mark.anyio


def test_model_ids_come_from_client_names():
    assert model_id_for("Visual Studio Code") == "visual-studio-code"
    assert model_id_for("claude-code") == "claude-code"
    assert model_id_for(None) == "mcp-client"


def test_a_turn_mixing_tool_results_and_text_is_split_for_sampling():
    messages = [
        Message(role="user", content=[TextBlock(text="go")]),
        Message(role="assistant", content=[ToolUseBlock(id="t1", name="ls", input={})]),
        Message(
            role="user",
            content=[
                ToolResultBlock(tool_use_id="t1", content=[TextBlock(text="a.txt")]),
                TextBlock(text="continue"),
            ],
        ),
    ]
    sampled = to_sampling_messages(messages)
    assert [(m.role, [b.type for b in m.content_as_list]) for m in sampled] == [
        ("user", ["text"]),
        ("assistant", ["tool_use"]),
        ("user", ["tool_result"]),
        ("user", ["text"]),
    ]


async def test_a_change_learned_before_the_link_listens_is_still_announced():
    client = ClientState(Settings(concurrency=3, model_name=None, mode="auto"))
    announced = client.info()  # what the hello carried
    client.name, client.sampling, client.session = "late-client", True, object()  # type: ignore[assignment]
    client._notify()  # the handshake finished before follow_client started waiting
    sent: list = []

    async def send(frame) -> None:
        sent.append(frame)

    link = RelayLink("/nowhere", client, sampling_timeout=1, reconnect_max_delay=1)
    async with anyio.create_task_group() as tg:
        session = _Session(link, send, tg)
        tg.start_soon(session.follow_client, announced)
        with anyio.fail_after(5):
            while len(sent) < 2:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert isinstance(sent[0], Update) and sent[0].worker.client_name == "late-client"
    assert sent[0].worker.modes == ["sampling", "agent"]
    assert sent[1] == Ready(slots=3)
