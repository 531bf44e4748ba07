"""Unit tests of mcptb-server pieces that need no MCP client: the relay-link session's bookkeeping
and the neutral -> sampling conversion."""

from __future__ import annotations

import anyio
import pytest

from mcp_server._agent import AgentDesk
from mcp_server._client import ClientState, Settings, model_id_for
from mcp_server._relay_link import RelayLink, _Session
from mcp_server._sampling import to_sampling_messages
from shared_protocol import (
    Message,
    NeutralRequest,
    Ready,
    Release,
    RequestFrame,
    TextBlock,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Update,
)

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


class FakeLink:
    """Stands in for the relay link: connected, records what the desk sends."""

    connected = True
    socket_path = "/nowhere"
    last_error = None

    def __init__(self) -> None:
        self.sent: list = []

    async def send(self, frame) -> bool:
        self.sent.append(frame)
        return True

    async def balance(self) -> None:
        pass


class FakeContext:
    meta = None

    class session:
        @staticmethod
        async def report_progress(*args) -> None:
            pass


def request_frame(request_id: str = "req_1") -> RequestFrame:
    return RequestFrame(
        id=request_id,
        timeout=60,
        request=NeutralRequest(messages=[Message(role="user", content=[TextBlock(text="hi")])], max_tokens=10),
    )


@pytest.mark.parametrize("cancel_before_resume", [True, False])
async def test_a_request_that_reaches_a_cancelled_next_request_goes_back_to_the_relay(cancel_before_resume):
    link = FakeLink()
    desk = AgentDesk(ClientState(Settings(concurrency=1, model_name=None, mode="agent")), link)
    results: list = []

    async def pull() -> None:
        results.append(await desk.next_request(FakeContext(), {"wait_seconds": 30}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(pull)
        with anyio.fail_after(5):
            while not desk.waiting:
                await anyio.sleep(0.01)
        assert desk.offer(request_frame())
        if not cancel_before_resume:
            await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    if results:  # the call completed: the request was shown to the agent and stays open for its reply
        assert desk.knows("req_1") and link.sent == []
    else:  # the call was cancelled: nobody saw the request, so the relay gets it back
        assert link.sent == [Release(id="req_1")] and not desk.knows("req_1")
    assert cancel_before_resume != bool(results)


async def test_reply_frames_carry_the_model_id_and_a_tool_call():
    link = FakeLink()
    desk = AgentDesk(ClientState(Settings(concurrency=1, model_name="team-bot", mode="agent")), link)
    frame = RequestFrame(
        id="req_2",
        timeout=60,
        request=NeutralRequest(
            messages=[Message(role="user", content=[TextBlock(text="hi")])],
            max_tokens=10,
            tools=[ToolSpec(name="f", input_schema={"type": "object"})],
        ),
    )
    desk.open[frame.id] = frame
    result = await desk.reply(
        {"request_id": "req_2", "content": "", "tool_calls": [{"name": "f", "arguments": '{"a": 1}'}]}
    )
    assert not result.is_error
    assert [type(f).__name__ for f in link.sent] == ["Start", "ToolCall", "End"]
    assert link.sent[0].model == "team-bot" and link.sent[1].arguments == {"a": 1}
    assert link.sent[2].stop_reason == "toolUse"
