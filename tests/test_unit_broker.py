"""Unit tests of the relay's broker (sans-I/O): assignment, re-queueing, routing, and that a reply
only ever reaches its own caller. Workers here are fakes that record the frames sent to them."""

from __future__ import annotations

import anyio
import pytest

from relay._broker import MAX_ASSIGNMENTS, Broker
from relay._errors import RelayError
from relay._jobs import Assigned, Failed, TextBatch
from shared_protocol import (
    MAX_LINE_BYTES,
    Cancel,
    End,
    ErrorFrame,
    Message,
    NeutralRequest,
    RelayFrameDecoder,
    RequestFrame,
    Start,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolSpec,
    WorkerInfo,
)


class FakeWorker:
    def __init__(self, broker: Broker, **info):
        self.sent: list = []
        self.handle = broker.add_worker(WorkerInfo(**info), self.send)

    def send(self, line: bytes) -> bool:
        self.sent += list(RelayFrameDecoder().feed(line))
        return True

    def requests(self) -> list[str]:
        return [f.id for f in self.sent if isinstance(f, RequestFrame)]


def neutral(text: str = "hi", model: str | None = None, tools: bool = False) -> NeutralRequest:
    return NeutralRequest(
        model=model,
        messages=[Message(role="user", content=[TextBlock(text=text)])],
        max_tokens=10,
        tools=[ToolSpec(name="f", input_schema={"type": "object"})] if tools else [],
    )


def drain(job) -> list:
    events = []
    while True:
        try:
            events.append(job.events.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return events


def test_no_worker_and_a_full_queue_are_refused_at_once():
    broker = Broker(max_queue=1, socket_path="/s")
    with pytest.raises(RelayError) as no_worker:
        broker.submit("a", neutral(), 5)
    assert no_worker.value.kind == "no_worker" and "--socket /s" in no_worker.value.message
    FakeWorker(broker)  # connected, no slots
    broker.submit("a", neutral(), 5)
    with pytest.raises(RelayError) as full:
        broker.submit("b", neutral(), 5)
    assert full.value.kind == "queue_full" and full.value.retry_after == 1


def test_jobs_wait_for_a_slot_and_go_oldest_first():
    broker = Broker(max_queue=10, socket_path="/s")
    worker = FakeWorker(broker)
    first, second = broker.submit("a", neutral(), 5), broker.submit("b", neutral(), 5)
    assert worker.requests() == []
    broker.grant(worker.handle, 1)
    assert worker.requests() == ["a"] and drain(first) == [Assigned(worker.handle.id)]
    broker.grant(worker.handle, 1)
    assert worker.requests() == ["a", "b"] and second.state == "assigned"


def test_answers_reach_only_their_own_caller():
    broker = Broker(max_queue=10, socket_path="/s")
    one, two = FakeWorker(broker), FakeWorker(broker)
    broker.grant(one.handle, 1)
    broker.grant(two.handle, 1)
    job_a, job_b = broker.submit("a", neutral(), 5), broker.submit("b", neutral(), 5)
    # worker two tries to answer worker one's job: ignored
    broker.on_answer(two.handle, TextDelta(id="a", text="WRONG"))
    broker.on_answer(one.handle, Start(id="a", model="m"))
    broker.on_answer(one.handle, TextDelta(id="a", text="for a"))
    broker.on_answer(one.handle, End(id="a", stop_reason="endTurn"))
    broker.on_answer(one.handle, TextDelta(id="a", text="late, after end"))
    assert [type(e).__name__ for e in drain(job_a)] == ["Assigned", "Start", "TextBatch", "End"]
    assert [type(e).__name__ for e in drain(job_b)] == ["Assigned"]
    assert job_a.state == "done" and broker.in_flight == 1


def test_a_worker_lost_before_start_gets_its_job_requeued_once():
    broker = Broker(max_queue=10, socket_path="/s")
    workers = [FakeWorker(broker) for _ in range(MAX_ASSIGNMENTS + 1)]
    job = broker.submit("a", neutral(), 5)
    for lost in workers[:MAX_ASSIGNMENTS]:
        broker.grant(lost.handle, 1)
        assert lost.requests() == ["a"]
        broker.remove_worker(lost.handle)
    events = drain(job)
    assert isinstance(events[-1], Failed) and events[-1].error.kind == "worker_lost"
    assert workers[-1].requests() == []


def test_a_worker_lost_after_start_fails_the_job_instead_of_resending_it():
    broker = Broker(max_queue=10, socket_path="/s")
    first, second = FakeWorker(broker), FakeWorker(broker)
    broker.grant(first.handle, 1)
    job = broker.submit("a", neutral(), 5)
    broker.on_answer(first.handle, Start(id="a", model="m"))
    broker.remove_worker(first.handle)
    broker.grant(second.handle, 1)
    assert second.requests() == []
    assert isinstance(drain(job)[-1], Failed)


def test_release_hands_a_job_back_to_the_head_of_the_queue_for_free():
    broker = Broker(max_queue=10, socket_path="/s")
    worker = FakeWorker(broker)
    broker.grant(worker.handle, 1)
    job = broker.submit("a", neutral(), 5)
    for _ in range(MAX_ASSIGNMENTS + 2):
        broker.release(worker.handle, "a")
        assert job.state == "queued"
        broker.grant(worker.handle, 1)
        assert job.state == "assigned"


def test_cancel_tells_the_worker_and_ignores_what_comes_after():
    broker = Broker(max_queue=10, socket_path="/s")
    worker = FakeWorker(broker)
    broker.grant(worker.handle, 1)
    job = broker.submit("a", neutral(), 5)
    broker.cancel(job, "caller disconnected")
    assert worker.sent[-1] == Cancel(id="a", reason="caller disconnected")
    broker.on_answer(worker.handle, ErrorFrame(id="a", code="cancelled", message="x"))
    broker.cancel(job, "again")  # idempotent
    assert sum(isinstance(f, Cancel) for f in worker.sent) == 1
    queued = broker.submit("b", neutral(), 5)
    broker.cancel(queued, "gone")
    assert not broker.queue


def test_routing_by_model_and_by_tool_support():
    broker = Broker(max_queue=10, socket_path="/s")
    vscode = FakeWorker(broker, models=["vscode"])
    claude = FakeWorker(broker, models=["claude-code"], tools=True)
    broker.grant(vscode.handle, 5)
    broker.grant(claude.handle, 5)
    broker.submit("pinned", neutral(model="claude-code"), 5)
    broker.submit("tools", neutral(tools=True), 5)
    broker.submit("any", neutral(model="gpt-4o"), 5)
    assert claude.requests() == ["pinned", "tools"]
    assert vscode.requests() == ["any"]
    with pytest.raises(RelayError) as refused:
        only = Broker(max_queue=10, socket_path="/s")
        FakeWorker(only)
        only.submit("t", neutral(tools=True), 5)
    assert refused.value.kind == "tools_unsupported" and refused.value.param == "tools"


@pytest.mark.parametrize("limit", ["text", "events"])
def test_a_caller_that_stops_reading_is_dropped_not_buffered_forever(monkeypatch, limit):
    monkeypatch.setattr("relay._broker.JOB_EVENT_BUFFER", 4)
    broker = Broker(max_queue=10, socket_path="/s", max_unread=5)
    worker = FakeWorker(broker)
    broker.grant(worker.handle, 1)
    job = broker.submit("a", neutral(), 5)
    broker.on_answer(worker.handle, Start(id="a", model="m"))
    for i in range(10):
        if limit == "events":  # text and tool calls alternating: each is an event of its own
            broker.on_answer(worker.handle, ToolCall(id="a", call_id=f"c{i}", name="f", arguments={}))
        broker.on_answer(worker.handle, TextDelta(id="a", text="x"))
    assert job.state == "done" and isinstance(worker.sent[-1], Cancel)


def test_thousands_of_tiny_deltas_in_one_go_arrive_whole_and_in_order():
    broker = Broker(max_queue=10, socket_path="/s")
    worker = FakeWorker(broker)
    broker.grant(worker.handle, 1)
    job = broker.submit("a", neutral(), 5)
    broker.on_answer(worker.handle, Start(id="a", model="m"))
    for i in range(5000):
        broker.on_answer(worker.handle, TextDelta(id="a", text=str(i % 10)))
    broker.on_answer(worker.handle, ToolCall(id="a", call_id="c1", name="f", arguments={}))
    broker.on_answer(worker.handle, TextDelta(id="a", text="after"))
    broker.on_answer(worker.handle, End(id="a", stop_reason="toolUse"))
    events = drain(job)
    assert [type(e).__name__ for e in events] == ["Assigned", "Start", "TextBatch", "ToolCall", "TextBatch", "End"]
    first, second = (job.take(e) for e in events if isinstance(e, TextBatch))
    assert first.text == "0123456789" * 500 and second.text == "after" and job.unread == 0


def test_a_request_too_large_for_the_worker_link_is_refused_at_submit_never_sent():
    broker = Broker(max_queue=10, socket_path="/s")
    worker = FakeWorker(broker)
    broker.grant(worker.handle, 1)
    huge = NeutralRequest(messages=[Message(role="user", content=[TextBlock(text="x" * MAX_LINE_BYTES)])], max_tokens=5)
    with pytest.raises(RelayError) as error:
        broker.submit("a", huge, 5)
    assert error.value.kind == "body_too_large" and error.value.shape.status == 413
    assert f"larger than {MAX_LINE_BYTES} bytes" in error.value.message
    assert worker.sent == [] and not broker.queue
    broker.submit("b", neutral(), 5)  # the link is untouched: the next request goes out
    assert worker.requests() == ["b"]


def test_an_unstarted_job_moves_to_the_least_busy_worker_but_an_accepted_one_stays():
    broker = Broker(max_queue=10, socket_path="/s")
    stuck, healthy = FakeWorker(broker), FakeWorker(broker)
    broker.grant(stuck.handle, 100)
    first = broker.submit("a", neutral(), 5)
    broker.grant(healthy.handle, 1)
    second = broker.submit("b", neutral(), 5)
    assert (stuck.requests(), healthy.requests()) == (["a"], ["b"])  # least in flight, not first connected
    assert not broker.move_unstarted(first, "slow")  # the healthy worker has no free slot
    broker.grant(healthy.handle, 1)
    assert broker.move_unstarted(first, "slow")
    assert healthy.requests() == ["b", "a"] and stuck.sent[-1] == Cancel(id="a", reason="slow")
    assert not broker.move_unstarted(first, "slow")  # it is not handed back to a worker it left
    broker.accept(healthy.handle, "b")  # an agent works on it
    broker.grant(stuck.handle, 1)
    assert not broker.move_unstarted(second, "slow") and second.worker is healthy.handle


def conversation(*texts: str) -> NeutralRequest:
    roles = ["user", "assistant"]
    return NeutralRequest(
        messages=[Message(role=roles[i % 2], content=[TextBlock(text=t)]) for i, t in enumerate(texts)],
        max_tokens=10,
    )


def test_a_continuation_waits_briefly_for_the_agent_that_answered_its_earlier_turns():
    now = [0.0]
    broker = Broker(max_queue=10, socket_path="/s", continuation_hold=3.0, clock=lambda: now[0])
    first = FakeWorker(broker, modes=["agent"], agent="serving")
    second = FakeWorker(broker, modes=["agent"], agent="serving")
    broker.grant(second.handle, 1)
    broker.submit("a", conversation("turn 0"), 5)
    broker.on_answer(second.handle, Start(id="a", model="m"))
    broker.on_answer(second.handle, End(id="a", stop_reason="endTurn"))
    broker.grant(first.handle, 1)  # only "first" waits now; "second" is between two next_request calls
    broker.submit("b", conversation("turn 0", "answer", "turn 1"), 5)
    assert first.requests() == []  # held for "second", which has the earlier turns in context
    broker.grant(second.handle, 1)
    assert second.requests() == ["a", "b"]
    broker.submit("c", conversation("turn 0", "answer", "turn 1", "answer", "turn 2"), 5)
    now[0] = 3.0  # "second" did not come back within the hold
    broker.pump()
    assert first.requests() == ["c"]


def test_no_hold_when_the_agent_that_answered_is_away_or_gone():
    broker = Broker(max_queue=10, socket_path="/s", continuation_hold=3.0, clock=lambda: 0.0)
    first = FakeWorker(broker, modes=["agent"], agent="serving")
    second = FakeWorker(broker, modes=["agent"], agent="serving")
    broker.grant(second.handle, 1)
    broker.submit("a", conversation("turn 0"), 5)
    broker.on_answer(second.handle, End(id="a", stop_reason="endTurn"))
    broker.update_worker(second.handle, WorkerInfo(modes=["agent"], agent="away"))  # its user stopped serving
    broker.grant(first.handle, 1)
    broker.submit("b", conversation("turn 0", "answer", "turn 1"), 5)
    assert first.requests() == ["b"]


def test_a_callers_own_session_is_waiting_for_itself_only_when_no_other_worker_could_serve_it():
    """The coding session that calls the relay may have the bridge registered too (its own worker, away
    while it waits for this answer); another session's agent between two calls is only away a moment."""
    from relay._jobs import Caller

    broker = Broker(max_queue=10, socket_path="/s")
    FakeWorker(broker, modes=["agent"], agent="away", session="coding", client_name="claude-code")
    job = broker.submit("a", neutral(), 5, Caller(claude_code=True, session="coding"))
    assert broker.unserved(job)[0] == "waiting_for_itself"
    FakeWorker(broker, modes=["agent"], agent="away", session="serving", client_name="claude-code")
    assert broker.unserved(job)[0] == "no_agent"  # the serving session comes back to next_request soon
    FakeWorker(broker, modes=["agent"], agent="serving", session="other", client_name="claude-code")
    assert broker.unserved(job) is None
