"""Delta rendering (issue 11.3): an agent is shown what is new in a request, with references to what
it was shown before; show_request gives the whole request. Through the worker core, as the tools
call it."""

from __future__ import annotations

from dataclasses import replace

from mcp_server._core import WorkerCore
from mcp_server._effects import Shown, Waiting
from shared_protocol import Message, NeutralRequest, RequestFrame, TextBlock, ToolSpec, ToolUseBlock, WorkerInfo

HELLO = WorkerInfo(modes=["agent"], tools=True)
SYSTEM = "You are the caller's assistant. " * 600  # 19,200 characters: Claude Code's is tens of thousands
TOOLS = [  # Claude Code offers 15-25 tools of about 1,000 characters each
    ToolSpec(name=f"tool_{i}", description="Does one thing well. " * 45, input_schema={"type": "object"})
    for i in range(20)
]


def core() -> WorkerCore:
    worker = WorkerCore("/s", HELLO)
    worker.link_up(worker.described())
    return worker


def turns(n: int) -> list[Message]:
    """A conversation of n user turns with the assistant's answers between them."""
    messages = []
    for i in range(n):
        if i:
            messages.append(Message(role="assistant", content=[TextBlock(text=f"answer {i - 1}")]))
        messages.append(Message(role="user", content=[TextBlock(text=f"question {i}")]))
    return messages


def serve(worker: WorkerCore, request_id: str, messages: list[Message], tools: list[ToolSpec] = TOOLS) -> Shown:
    step, _ = worker.agent_waits({"wait_seconds": 5})
    assert isinstance(step, Waiting)
    request = NeutralRequest(messages=messages, system=SYSTEM, tools=tools, max_tokens=100)
    worker.request(RequestFrame(id=request_id, timeout=60, request=request))
    shown, _ = worker.show(step.waiter)
    assert shown is not None
    return shown


def answer(worker: WorkerCore, request_id: str) -> None:
    delivery = worker.reply({"request_id": request_id, "content": "fine"})
    worker.reply_written(request_id, written=True)
    assert delivery is not None


def test_a_10_turn_conversation_shows_each_turn_once_and_the_system_prompt_and_tools_once():
    worker = core()
    texts = []
    for n in range(1, 11):
        shown = serve(worker, f"req_{n}", turns(n))
        texts.append(shown.text)
        answer(worker, f"req_{n}")
    first, *later = texts
    assert SYSTEM in first and "Does one thing well." in first and "continues request" not in first
    for n, text in enumerate(later, start=2):
        count = f"{2 * n - 3} turn{'' if n == 2 else 's'}"
        assert f"conversation: continues request req_{n - 1} ({count}), then:" in text
        assert f"question {n - 1}" in text and f"answer {n - 2}" in text  # the new turns
        assert f"question {n - 2}" not in text  # not the ones shown before
        assert SYSTEM not in text and "system prompt: as in request req_1" in text
        assert all(f"- tool_{i}: as in request req_1" in text for i in range(20))
        assert f'show_request("req_{n}") shows all' in text
    full = sum(len(serve(core(), f"x_{n}", turns(n)).text) for n in range(1, 11))
    assert full > 5 * sum(map(len, texts))  # the aim: at least 5x fewer characters (see just bench)


def test_show_request_gives_the_whole_request_with_every_reference_resolved():
    worker = core()
    serve(worker, "req_1", turns(1))
    answer(worker, "req_1")
    shown = serve(worker, "req_2", turns(3))
    assert "question 0" not in shown.text
    whole = worker.show_again({"request_id": "req_2"})
    assert not whole.error
    assert "question 0" in whole.text and SYSTEM in whole.text and "as in request" not in whole.text
    answer(worker, "req_2")
    late = worker.show_again({"request_id": "req_2"})
    assert late.error and "already answered" in late.text
    # the conversation goes on after show_request: still a continuation of what was shown
    assert "continues request req_2 (5 turns)" in serve(worker, "req_3", turns(4)).text


def test_a_continuation_that_lands_on_another_server_is_shown_in_full():
    worker, other = core(), core()
    serve(worker, "req_1", turns(2))
    answer(worker, "req_1")
    text = serve(other, "req_2", turns(3)).text
    assert "as in request" not in text and "continues" not in text and "question 0" in text and SYSTEM in text


def test_a_changed_tool_is_shown_in_full_and_the_unchanged_ones_as_references():
    worker = core()
    serve(worker, "req_1", turns(1))
    answer(worker, "req_1")
    changed = [*TOOLS[:19], replace(TOOLS[19], description="Now does two things. " * 10)]
    text = serve(worker, "req_2", turns(2), tools=changed).text
    assert "- tool_0: as in request req_1" in text and "Now does two things." in text
    assert "- tool_19: as in request" not in text


def test_the_agents_own_reply_passed_back_exactly_is_not_shown_again():
    worker = core()
    serve(worker, "req_1", turns(1))
    delivery = worker.reply(
        {"request_id": "req_1", "content": "answer 0", "tool_calls": [{"name": "tool_0", "arguments": {"a": 1}}]}
    )
    worker.reply_written("req_1", written=True)
    call = delivery.frames[2]
    echoed = Message(
        role="assistant",
        content=[TextBlock(text="answer 0"), ToolUseBlock(id=call.call_id, name="tool_0", input={"a": 1})],
    )
    text = serve(worker, "req_2", [*turns(1), echoed, Message(role="user", content=[TextBlock(text="next")])]).text
    assert "continues request req_1 and your reply to it (2 turns), then:" in text
    assert "answer 0" not in text and "next" in text
    # a caller that changed the reply: the reply is shown, the earlier turns are still a reference
    edited = Message(role="assistant", content=[TextBlock(text="answer 0, edited")])
    text = serve(worker, "req_3", [*turns(1), edited, Message(role="user", content=[TextBlock(text="next")])]).text
    assert "continues request req_1 (1 turn), then:" in text and "answer 0, edited" in text
