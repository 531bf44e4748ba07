"""The worker's sans-I/O core: every race replayed as a sequence of calls (no tasks, no sleeps)."""

from __future__ import annotations

from dataclasses import replace

from mcp_server._core import WorkerCore
from mcp_server._effects import Delivery, Send, StartSampling, StopSampling, ToolText, Waiting, Wake
from shared_protocol import (
    Accepted,
    End,
    ErrorFrame,
    Message,
    NeutralRequest,
    Ready,
    Release,
    RequestFrame,
    Start,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolSpec,
    Update,
    Withdraw,
    WorkerInfo,
)

HELLO = WorkerInfo(modes=["agent"], tools=True)


def frame(request_id: str = "req_1", tools: bool = False) -> RequestFrame:
    return RequestFrame(
        id=request_id,
        timeout=60,
        request=NeutralRequest(
            messages=[Message(role="user", content=[TextBlock(text="hi")])],
            max_tokens=10,
            tools=[ToolSpec(name="f", input_schema={"type": "object"})] if tools else [],
        ),
    )


def sent(effects) -> list:
    """The frames sent, but for updates (see :func:`updates`)."""
    return [e.frame for e in effects if isinstance(e, Send) and not isinstance(e.frame, Update)]


def updates(effects) -> list[WorkerInfo]:
    return [e.frame.worker for e in effects if isinstance(e, Send) and isinstance(e.frame, Update)]


def agent_core(**kwargs) -> WorkerCore:
    core = WorkerCore("/run/relay.sock", HELLO, **kwargs)
    capacity = kwargs.get("capacity", 0)
    assert sent(core.link_up(HELLO)) == ([Ready(slots=capacity)] if capacity else [])
    return core


def wait(core: WorkerCore, seconds: float = 30) -> int:
    step, _ = core.agent_waits({"wait_seconds": seconds})
    assert isinstance(step, Waiting)
    return step.waiter


def test_a_waiting_agent_holds_one_slot_and_gives_it_back_when_its_wait_ends():
    core = agent_core()
    step, effects = core.agent_waits({"wait_seconds": 5})
    assert isinstance(step, Waiting) and sent(effects) == [Ready(slots=1)]
    text, effects = core.agent_gives_up(step.waiter, 5)
    assert "No request yet (waited 5 s)" in text.text and sent(effects) == [Withdraw(slots=1)]
    assert core.granted == 0 and core.waiting == 0


def test_a_request_goes_to_the_longest_waiting_agent_and_counts_as_shown_once_returned():
    core = agent_core()
    first, second = wait(core), wait(core)
    assert core.granted == 2
    assert core.request(frame("req_1")) == [Wake(first)]  # the slot it used is gone: nothing to re-announce
    assert core.show(second) == (None, [])
    shown, effects = core.show(first)
    assert shown is not None and shown.frame.id == "req_1" and core.is_open("req_1")
    # the relay will not move it for a slow start, and learns what the agent was given to read
    assert effects == [Send(Accepted(id="req_1", handed=len(shown.text)))]
    assert core.granted == 1  # the second agent still waits


def test_a_request_reaching_a_cancelled_next_request_goes_back_to_the_relay():
    core = agent_core()
    waiter = wait(core)
    assert core.request(frame()) == [Wake(waiter)]
    _, effects = core.agent_gives_up(waiter, 30)  # cancelled after the wake, before show
    assert sent(effects) == [Release(id="req_1")]
    assert not core.is_open("req_1") and core.granted == 0


def test_a_slot_is_never_announced_twice():
    core = agent_core(capacity=2)
    assert core.granted == 2
    waiter = wait(core)
    assert core.granted == 3
    # the relay sends a request against the agent's slot; a second one crosses our withdraw
    assert core.request(frame("req_1")) == [Wake(waiter)]
    effects = core.request(frame("req_2"))
    assert effects == [StartSampling(frame("req_2"))]
    assert core.granted == 1
    effects = core.request(frame("req_3"))
    assert effects == [StartSampling(frame("req_3"))] and core.granted == 0
    effects = core.request(frame("req_4"))  # no slot was granted for this one
    assert sent(effects) == [Release(id="req_4")] and core.granted == 0
    # a duplicate of a request we hold is handed back, never answered twice
    assert sent(core.request(frame("req_2"))) == [Release(id="req_2")]
    assert sent(core.sampling_done("req_2", [End(id="req_2", stop_reason="endTurn")])) == [
        End(id="req_2", stop_reason="endTurn"),
        Ready(slots=1),
    ]


def test_slots_follow_capacity_changes_and_start_from_zero_on_a_new_link():
    core = WorkerCore("/s", HELLO)
    assert core.client_changed(HELLO, 3, "m") == []  # no link yet: nothing to announce
    effects = core.link_up(HELLO)
    assert sent(effects) == [Ready(slots=3)]
    assert sent(core.client_changed(HELLO, 1, "m")) == [Withdraw(slots=2)]
    core.link_lost()
    assert core.granted == 0
    assert sent(core.link_up(HELLO)) == [Ready(slots=1)]


def test_a_client_change_learned_before_the_link_is_up_is_announced_with_it():
    core = WorkerCore("/s", HELLO)
    later = WorkerInfo(client_name="late-client", modes=["sampling", "agent"], concurrency=3)
    core.client_changed(later, 3, "late-client")
    effects = core.link_up(HELLO)
    assert updates(effects) == [replace(later, agent="away")] and sent(effects) == [Ready(slots=3)]


def test_the_relay_hears_when_an_agent_serves_and_when_it_is_away():
    """Serving: waiting in next_request, or working on a shown request (until its reply is written)."""
    core = WorkerCore("/s", HELLO)
    assert [i.agent for i in updates(core.link_up(HELLO))] == ["away"]
    step, effects = core.agent_waits({"wait_seconds": 5})
    assert [i.agent for i in updates(effects)] == ["serving"]
    assert updates(core.request(frame())) == []  # still serving: it got a request
    _, effects = core.show(step.waiter)
    assert updates(effects) == []
    delivery = core.reply({"request_id": "req_1", "content": "hello"})
    assert isinstance(delivery, Delivery)
    _, effects = core.reply_written("req_1", written=True)
    assert [i.agent for i in updates(effects)] == ["away"]  # until it calls next_request again
    step, effects = core.agent_waits({"wait_seconds": 5})
    assert [i.agent for i in updates(effects)] == ["serving"]
    _, effects = core.agent_gives_up(step.waiter, 5)
    assert [i.agent for i in updates(effects)] == ["away"]


def test_a_reply_is_accepted_once_and_its_frames_carry_the_model_id():
    core = agent_core(model_id="team-bot")
    waiter = wait(core)
    core.request(frame("req_2", tools=True))
    core.show(waiter)
    step = core.reply({"request_id": "req_2", "content": "", "tool_calls": [{"name": "f", "arguments": '{"a": 1}'}]})
    assert isinstance(step, Delivery)
    assert [type(f) for f in step.frames] == [Start, ToolCall, End]
    assert step.frames[0].model == "team-bot" and step.frames[1].arguments == {"a": 1}
    assert step.frames[2].stop_reason == "toolUse"
    assert core.tally.served == 1  # counted as it goes out: a session stopped now has it in its record
    again = core.reply({"request_id": "req_2", "content": "twice"})
    assert isinstance(again, ToolText) and again.error and "being delivered" in again.text
    done, _ = core.reply_written("req_2", written=True)
    assert not done.error and "Delivered the reply to req_2" in done.text and core.tally.served == 1
    late = core.reply({"request_id": "req_2", "content": "twice"})
    assert isinstance(late, ToolText) and "already answered" in late.text


def test_a_reply_whose_link_breaks_mid_delivery_is_not_called_answered():
    core = agent_core()
    waiter = wait(core)
    core.request(frame())
    core.show(waiter)
    step = core.reply({"request_id": "req_1", "content": "hello"})
    assert isinstance(step, Delivery)
    core.link_lost()
    result, _ = core.reply_written("req_1", written=False)
    assert result.error and "connection to the relay was lost" in result.text
    assert core.tally.served == 0  # taken back
    retried = core.reply({"request_id": "req_1", "content": "hello"})
    assert isinstance(retried, ToolText) and "already answered" not in retried.text
    assert "connection to the relay was lost" in retried.text


def test_a_shown_request_closed_by_the_relay_explains_a_late_reply():
    core = agent_core()
    waiter = wait(core)
    core.request(frame())
    core.show(waiter)
    assert core.cancel("req_1", "caller disconnected") == []
    late = core.reply({"request_id": "req_1", "content": "too late"})
    assert isinstance(late, ToolText) and "its caller is gone (caller disconnected)" in late.text


def test_a_cancel_for_a_request_not_yet_shown_lets_the_agent_wait_on():
    core = agent_core()
    waiter = wait(core)
    core.request(frame())
    assert sent(core.cancel("req_1", "caller disconnected")) == [Ready(slots=1)]
    assert core.show(waiter)[0] is None and core.waiting == 1


def test_reply_errors_name_what_to_fix():
    core = agent_core()
    waiter = wait(core)
    core.request(frame(tools=True))
    core.show(waiter)
    cases = {
        "request_id is required": {"content": "x"},
        "content must be a string": {"request_id": "req_1", "content": 3},
        "which the caller did not offer (offered: f)": {
            "request_id": "req_1",
            "content": "",
            "tool_calls": [{"name": "g"}],
        },
        "is not valid JSON": {"request_id": "req_1", "content": "", "tool_calls": [{"name": "f", "arguments": "{"}]},
        "must be a JSON object": {
            "request_id": "req_1",
            "content": "",
            "tool_calls": [{"name": "f", "arguments": "[]"}],
        },
        "finish_reason must be one of": {"request_id": "req_1", "content": "x", "finish_reason": "done"},
        "Give content": {"request_id": "req_1", "content": ""},
        "No request req_9": {"request_id": "req_9", "content": "x"},
    }
    for expected, arguments in cases.items():
        result = core.reply(arguments)
        assert isinstance(result, ToolText) and result.error and expected in result.text, (expected, result)
    assert core.is_open("req_1")  # none of them used the request up


def test_cancelled_sampling_sends_nothing_and_frees_its_slot_when_it_ends():
    core = agent_core(capacity=1)
    assert core.request(frame()) == [StartSampling(frame())]
    assert core.cancel("req_1", "caller left") == [StopSampling("req_1", "caller left")]
    assert core.cancel("req_1", "again") == []  # stopped once
    effects = core.sampling_done("req_1", [])
    assert sent(effects) == [Ready(slots=1)]


def test_a_lost_link_stops_sampling_and_drops_what_it_produces():
    core = agent_core(capacity=1)
    core.request(frame())
    assert core.link_lost() == [StopSampling("req_1", "the connection to the relay was lost")]
    assert core.sampling_done("req_1", [TextDelta(id="req_1", text="late")]) == []


def test_next_request_waits_for_the_relay_whether_it_is_connecting_or_known_down():
    """Issue 15: an agent told at once that the relay is down calls again at once, a paid model turn
    each time; so every call waits its wait_seconds, and a relay that comes back meanwhile serves it."""
    core = WorkerCore("/run/relay.sock", HELLO)  # still connecting
    step, effects = core.agent_waits({"wait_seconds": 10})
    assert isinstance(step, Waiting) and effects == []
    assert sent(core.link_up(HELLO)) == [Ready(slots=1)]  # the waiting agent's slot, once the link is up
    core.link_lost()
    core.link_failed("cannot reach the relay at /run/relay.sock: Connection refused")  # e.g. a restart
    again, effects = core.agent_waits({"wait_seconds": 10})
    assert isinstance(again, Waiting) and effects == []  # nothing to announce while the link is down
    assert sent(core.link_up(HELLO)) == [Ready(slots=2)]  # back: both waiting agents get their slots
    assert core.request(frame()) == [Wake(step.waiter)]  # the longest-waiting agent


def test_a_wait_that_ends_while_the_relay_is_down_says_so():
    core = WorkerCore("/run/relay.sock", HELLO)
    waiter = wait(core)
    core.link_failed("cannot reach the relay at /run/relay.sock: No such file or directory")
    text, effects = core.agent_gives_up(waiter, 10)
    assert "not reachable" in text.text and "No such file" in text.text and effects == []


def test_wait_seconds_is_checked():
    core = agent_core()
    for bad in (0, 601, "5", True):
        step, effects = core.agent_waits({"wait_seconds": bad})
        assert isinstance(step, ToolText) and step.error and effects == []


def test_a_request_the_worker_cannot_read_is_answered_with_an_error_and_its_slot_granted_again():
    """A relay sent a request line this worker cannot read (a newer or broken relay): its caller gets the
    error at once and the slot it used is announced again, instead of both waiting for a timeout."""
    core = agent_core(capacity=2)
    effects = core.unreadable("req_9", "invalid frame (request.max_tokens: must be an integer)")
    (error, ready) = sent(effects)
    assert error == ErrorFrame(
        id="req_9",
        code="bad_frame",
        message="mcptb-server could not read this request from the relay: "
        "invalid frame (request.max_tokens: must be an integer)",
    )
    assert ready == Ready(slots=1) and core.granted == 2
