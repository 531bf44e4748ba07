"""Unit tests of the relay's broker (sans-I/O): assignment, re-queueing, routing, and that a reply
only ever reaches its own caller. Workers here are fakes that record the frames sent to them."""

from __future__ import annotations

import math

import anyio
import pytest

from relay._broker import MAX_ASSIGNMENTS, Broker
from relay._errors import RelayError
from relay._jobs import Assigned, Failed, JobEvents, Requeued, TextBatch, Timing
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


def test_the_callers_end_of_a_jobs_events_is_closed_once_the_caller_is_done():
    broker = Broker(max_queue=10, socket_path="/s")
    worker = FakeWorker(broker)
    broker.grant(worker.handle, 2)
    answered, refused = broker.submit("a", neutral(), 5), broker.submit("b", neutral(), 5)
    for frame in (Start(id="a", model="m"), TextDelta(id="a", text="x"), End(id="a", stop_reason="endTurn")):
        broker.on_answer(worker.handle, frame)
    drain(answered)
    broker.cancel(answered, "answered")  # what the app does once it has the whole answer
    broker.cancel(refused, "gone")
    for job in (answered, refused):
        with pytest.raises(anyio.ClosedResourceError):
            job.events.receive_nowait()
        assert job.send(Requeued()) == "caller gone"


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
    # its follower, when it reads again, finds what was queued and then the end (the answer was cut)
    assert drain(job)
    with pytest.raises(anyio.EndOfStream):
        job.events.receive_nowait()


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
    now = [0.0]
    broker = Broker(max_queue=10, socket_path="/s", timing=Timing(start_timeout=30), clock=lambda: now[0])
    stuck, healthy = FakeWorker(broker), FakeWorker(broker)
    broker.grant(stuck.handle, 100)
    first = broker.submit("a", neutral(), 5)
    broker.grant(healthy.handle, 1)
    second = broker.submit("b", neutral(), 5)
    assert (stuck.requests(), healthy.requests()) == (["a"], ["b"])  # least in flight, not first connected
    broker.accept(healthy.handle, "b", 900)  # an agent works on it: never moved
    assert broker.next_deadline() == 30
    now[0] = 30
    broker.tick(30)
    assert first.worker is stuck.handle  # the healthy worker has no free slot: it stays, and is tried again
    assert broker.next_deadline() == 60
    broker.grant(healthy.handle, 1)
    now[0] = 60
    broker.tick(60)
    moved = "not started within 30 s (relay --start-timeout); moved to another worker"
    assert healthy.requests() == ["b", "a"] and stuck.sent[-1] == Cancel(id="a", reason=moved)
    assert first.worker is healthy.handle and drain(first)[-2:] == [Requeued(), Assigned(healthy.handle.id)]
    broker.grant(stuck.handle, 1)
    now[0] = 90
    broker.tick(90)  # not handed back to a worker it left; "b" was accepted
    assert first.worker is healthy.handle and second.worker is healthy.handle
    assert stuck.requests() == ["a"]


def conversation(*texts: str) -> NeutralRequest:
    roles = ["user", "assistant"]
    return NeutralRequest(
        messages=[Message(role=roles[i % 2], content=[TextBlock(text=t)]) for i, t in enumerate(texts)],
        max_tokens=10,
    )


def test_a_continuation_waits_briefly_for_the_agent_that_answered_its_earlier_turns():
    now = [0.0]
    broker = Broker(max_queue=10, socket_path="/s", timing=Timing(continuation_hold=3.0), clock=lambda: now[0])
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
    assert first.requests() == [] and broker.next_deadline() == 3.0
    now[0] = 3.0  # "second" did not come back within the hold
    broker.tick(3.0)
    assert first.requests() == ["c"]


def test_no_hold_when_the_agent_that_answered_is_away_or_gone():
    broker = Broker(max_queue=10, socket_path="/s", timing=Timing(continuation_hold=3.0), clock=lambda: 0.0)
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
    caller = Caller(claude_code=True, session="coding")
    FakeWorker(broker, modes=["agent"], agent="away", session="coding", client_name="claude-code")
    with pytest.raises(RelayError) as itself:  # refused at once: nothing can change by waiting
        broker.submit("a", neutral(), 5, caller)
    assert itself.value.kind == "waiting_for_itself" and itself.value.retry_after == 300 and not broker.queue
    FakeWorker(broker, modes=["agent"], agent="away", session="serving", client_name="claude-code")
    job = broker.submit("b", neutral(), 5, caller)
    assert broker.unserved(job)[0] == "no_agent"  # the serving session comes back to next_request soon
    FakeWorker(broker, modes=["agent"], agent="serving", session="other", client_name="claude-code")
    assert broker.unserved(job) is None


# --- time: deadlines and graces fall due on tick(now) (fake clock) ---------------------------------------


def timed(**timing) -> tuple[Broker, list[float]]:
    now = [0.0]
    return Broker(max_queue=10, socket_path="/s", timing=Timing(**timing), clock=lambda: now[0]), now


def failure(job) -> RelayError:
    (failed,) = [e for e in drain(job) if isinstance(e, Failed)]
    return failed.error


def test_a_queued_job_fails_at_its_queue_deadline_counted_again_after_a_requeue():
    broker, now = timed(queue_timeout=10, request_timeout=100)
    worker = FakeWorker(broker)
    job = broker.submit("a", neutral(), 5)
    assert broker.next_deadline() == 10
    now[0] = 5
    broker.grant(worker.handle, 1)
    broker.release(worker.handle, "a")  # handed back at 5: ten more seconds from here
    assert job.state == "queued" and broker.next_deadline() == 15
    broker.tick(14.9)
    assert job.state == "queued"
    broker.tick(15)
    assert job.state == "done" and not broker.queue and failure(job).kind == "queue_timeout"
    assert broker.next_deadline() == float("inf")


def test_a_taken_job_fails_at_its_answer_deadline_and_its_worker_is_told():
    broker, _ = timed(request_timeout=60, start_timeout=30)
    worker = FakeWorker(broker)
    broker.grant(worker.handle, 1)
    job = broker.submit("a", neutral(), 5)
    broker.on_answer(worker.handle, Start(id="a", model="m"))  # started: no start deadline any more
    assert broker.next_deadline() == 60
    broker.tick(60)
    error = failure(job)
    assert error.kind == "answer_timeout" and "60 s (relay --request-timeout)" in error.message
    assert worker.sent[-1] == Cancel(id="a", reason=f"the relay gave up: {error.message}")
    assert job.state == "done" and broker.in_flight == 0


def test_with_no_worker_a_job_waits_the_worker_grace_and_one_that_connects_takes_it():
    broker, now = timed(worker_grace=10)
    first = broker.submit("a", neutral(), 5)
    second = broker.submit("b", neutral(), 5)
    assert broker.unserved(first)[0] == "no_worker"
    assert broker.next_deadline() == 3  # the warning
    broker.tick(3)
    assert first.warned and broker.next_deadline() == 10
    now[0] = 4
    worker = FakeWorker(broker)  # no slot yet, but somebody to serve it: no grace runs any more
    broker.tick(10)
    assert first.state == "queued" and first.nobody is None
    broker.grant(worker.handle, 2)
    assert first.state == second.state == "assigned"


def test_a_job_nobody_serves_fails_when_its_grace_is_over_with_that_reason():
    broker, _ = timed(worker_grace=10)
    job = broker.submit("a", neutral(), 5)
    broker.tick(10)
    assert failure(job).kind == "no_worker" and not broker.queue


def test_with_no_agent_serving_the_agent_grace_counts_from_when_nobody_serves():
    broker, now = timed(agent_grace=15)
    worker = FakeWorker(broker, modes=["agent"], agent="away", client_name="codex")
    job = broker.submit("a", neutral(), 5)
    now[0] = 10
    broker.update_worker(worker.handle, WorkerInfo(modes=["agent"], agent="serving", client_name="codex"))
    assert job.nobody is None  # an agent serves (it has no slot yet): no grace runs
    now[0] = 12
    broker.update_worker(worker.handle, WorkerInfo(modes=["agent"], agent="away", client_name="codex"))
    broker.tick(26)
    assert job.state == "queued"  # 15 s from 12, not from 0
    broker.tick(27)
    error = failure(job)
    assert error.kind == "no_agent" and "relay --agent-grace" in error.message


def test_a_request_whose_tools_the_worker_that_comes_cannot_use_is_refused_then():
    broker, _ = timed(worker_grace=10)
    job = broker.submit("a", neutral(tools=True), 5)
    FakeWorker(broker, tools=False, client_name="plain")
    assert failure(job).kind == "tools_unsupported"


def test_a_job_state_moves_only_along_the_table():
    from relay._jobs import IllegalMove

    broker = Broker(max_queue=10, socket_path="/s")
    FakeWorker(broker)
    job = broker.submit("a", neutral(), 5)
    with pytest.raises(IllegalMove, match="queued -> started"):
        job.move("started")
    broker.cancel(job, "gone")
    with pytest.raises(IllegalMove, match="done -> queued"):
        job.move("queued")


def test_text_before_start_is_taken_as_the_start_and_logged(caplog):
    broker = Broker(max_queue=10, socket_path="/s")
    worker = FakeWorker(broker)
    broker.grant(worker.handle, 1)
    job = broker.submit("a", neutral(), 5)
    broker.on_answer(worker.handle, TextDelta(id="a", text="early"))
    assert job.state == "started" and "sent text before start" in caplog.text


def test_the_agenda_stays_the_size_of_the_jobs_in_flight():
    from relay._agenda import REBUILD_SLACK

    broker, _ = timed(queue_timeout=300, request_timeout=600, start_timeout=30)
    worker = FakeWorker(broker)
    for i in range(5000):  # each request: queued, taken, started, answered; none ever falls due
        broker.grant(worker.handle, 1)
        broker.submit(f"r{i}", neutral(), 5)
        broker.on_answer(worker.handle, Start(id=f"r{i}", model="m"))
        broker.on_answer(worker.handle, End(id=f"r{i}", stop_reason="endTurn"))
    assert len(broker.agenda) == 0 and len(broker.agenda._heap) <= REBUILD_SLACK + 3


def test_a_request_timeout_shorter_than_the_start_timeout_fires_first():
    broker, _ = timed(request_timeout=10, start_timeout=30)
    worker = FakeWorker(broker)
    broker.grant(worker.handle, 1)
    job = broker.submit("a", neutral(), 5)  # taken, never started
    assert broker.next_deadline() == 10
    broker.tick(10)
    assert failure(job).kind == "answer_timeout"


def test_a_tools_request_whose_worker_left_is_refused_when_only_workers_without_tools_remain():
    broker, _ = timed(queue_timeout=300)
    able = FakeWorker(broker, tools=True, client_name="able")
    FakeWorker(broker, tools=False, client_name="plain")
    broker.grant(able.handle, 1)
    job = broker.submit("a", neutral(tools=True), 5)
    assert job.worker is able.handle
    broker.remove_worker(able.handle)  # before it started: back in the queue, where nobody can serve it
    error = failure(job)
    assert error.kind == "tools_unsupported" and "plain" in error.message and not broker.queue


def test_a_job_pinned_to_a_departed_workers_model_goes_to_any_worker_with_a_free_slot():
    broker = Broker(max_queue=10, socket_path="/s")
    special = FakeWorker(broker, models=["special"])
    other = FakeWorker(broker)
    broker.grant(other.handle, 1)
    job = broker.submit("a", neutral(model="special"), 5)  # waits for "special"'s slot
    assert job.state == "queued"
    broker.remove_worker(special.handle)
    assert job.worker is other.handle


def test_a_job_handed_back_must_be_accepted_again_by_its_next_worker():
    broker, now = timed(start_timeout=30)
    first, second, third = FakeWorker(broker), FakeWorker(broker), FakeWorker(broker)
    broker.grant(first.handle, 1)
    job = broker.submit("a", neutral(), 5)
    broker.accept(first.handle, "a", None)
    broker.grant(second.handle, 1)
    broker.release(first.handle, "a")  # handed back: "second" takes it, and has not accepted it
    assert job.worker is second.handle and not job.accepted
    broker.grant(third.handle, 1)
    now[0] = 30
    broker.tick(30)
    assert job.worker is third.handle  # moved for a slow start


def test_an_ended_job_is_not_held_by_the_agenda():
    import gc
    import weakref

    broker, _ = timed(queue_timeout=300, request_timeout=600, start_timeout=30)
    worker = FakeWorker(broker)
    broker.grant(worker.handle, 2)
    broker.submit("long", neutral(), 5)  # a long answer in progress: its deadline stays at the top
    broker.on_answer(worker.handle, Start(id="long", model="m"))
    done = broker.submit("short", neutral(), 5)
    broker.on_answer(worker.handle, Start(id="short", model="m"))
    broker.on_answer(worker.handle, End(id="short", stop_reason="endTurn"))
    broker.next_deadline()
    gone = weakref.ref(done)
    del done
    gc.collect()
    assert gone() is None


def test_a_bug_applying_one_jobs_deadlines_fails_that_job_and_not_the_others(monkeypatch, caplog):
    from relay import _deadlines

    broker, _ = timed(queue_timeout=10)
    FakeWorker(broker)
    first, second = broker.submit("a", neutral(), 5), broker.submit("b", neutral(), 5)
    real = _deadlines.queued

    def broken(job, *args):
        if job.id == "a":
            raise RuntimeError("a bug")
        return real(job, *args)

    monkeypatch.setattr(_deadlines, "queued", broken)
    broker.tick(10)
    assert failure(first).kind == "relay_bug" and "a bug" in caplog.text
    assert failure(second).kind == "queue_timeout"


@pytest.mark.anyio
async def test_a_followers_events_come_in_bursts_and_it_waits_only_when_there_are_none():
    events = JobEvents(capacity=3)
    started = anyio.current_time()
    await events.wait(started + 0.05)  # nothing comes: back at the deadline
    assert anyio.current_time() >= started + 0.05
    assert events.put(Assigned("w")) is None and events.put(Requeued()) is None
    await events.wait(anyio.current_time() + 60)  # something is there: no wait at all
    assert [events.receive_nowait(), events.receive_nowait()] == [Assigned("w"), Requeued()]
    with pytest.raises(anyio.WouldBlock):
        events.receive_nowait()
    async with anyio.create_task_group() as tg:
        tg.start_soon(events.wait, math.inf)
        await anyio.wait_all_tasks_blocked()
        events.put(Assigned("x"))  # wakes the waiter, or the task group never ends
    assert [events.put(Requeued()) for _ in range(3)] == [None, None, "caller not reading"]
    events.end()
    assert events.put(Requeued()) == "job ended"
    drained = [events.receive_nowait() for _ in range(3)]
    assert drained == [Assigned("x"), Requeued(), Requeued()]
    with pytest.raises(anyio.EndOfStream):
        events.receive_nowait()
    events.close()
    assert events.put(Requeued()) == "caller gone"


def test_a_job_records_how_long_it_waited_before_a_worker_first_took_it():
    """The queue wait on /metrics: from submit to the first assignment."""
    broker, now = timed(start_timeout=10)
    worker = FakeWorker(broker)
    job = broker.submit("a", neutral(), 5)
    assert job.waited is None
    now[0] = 3
    broker.grant(worker.handle, 1)
    assert job.waited == 3 and job.state == "assigned"


def test_a_callers_session_key_sends_its_next_request_to_the_agent_that_served_the_session():
    """A session key (Claude Code's session id, Codex's session-id, prompt_cache_key, metadata.user_id) finds
    the agent when the earlier turns cannot: the next request of the session is held for that agent even
    when its messages share nothing with the last one (Claude Code compacted them; Codex sent only what
    is new). A side request (``auxiliary``: a title, a classifier) goes anywhere and is not remembered."""
    from relay._affinity import session_key
    from relay._jobs import Caller

    now = [0.0]
    broker = Broker(max_queue=10, socket_path="/s", timing=Timing(continuation_hold=3.0), clock=lambda: now[0])
    first = FakeWorker(broker, modes=["agent"], agent="serving")
    second = FakeWorker(broker, modes=["agent"], agent="serving")
    session = Caller(affinity=session_key({"session-id": "codex-thread-1"}, None))
    side = Caller(affinity=session.affinity, request_class="auxiliary")
    broker.grant(second.handle, 1)
    broker.submit("a", conversation("turn 0"), 5, session)
    broker.on_answer(second.handle, End(id="a", stop_reason="endTurn"))
    broker.grant(first.handle, 1)
    broker.submit("b", conversation("a summary of everything so far"), 5, session)
    assert first.requests() == []  # held for "second", which served the session
    broker.submit("t", conversation("write a title"), 5, side)
    assert first.requests() == ["t"]  # a side request waits for nobody
    broker.on_answer(first.handle, End(id="t", stop_reason="endTurn"))
    broker.grant(second.handle, 1)
    assert second.requests() == ["a", "b"]
    broker.on_answer(second.handle, End(id="b", stop_reason="endTurn"))
    broker.grant(first.handle, 1)
    broker.submit("c", conversation("turn 2"), 5, session)  # still "second"'s session, not the side request's
    assert first.requests() == ["t"]
    stranger = Caller(affinity=session_key({}, "another-prompt-cache-key"))
    broker.submit("d", conversation("turn 2"), 5, stranger)
    assert first.requests() == ["t", "d"]


def test_each_clients_session_key_is_read_and_kept_apart_from_the_others():
    from relay._affinity import session_key

    forms = [
        ({"x-claude-code-session-id": "s"}, None),  # Claude Code
        ({"session-id": "s"}, None),  # Codex 0.171
        ({"session_id": "s"}, None),  # Codex before it
        ({}, "s"),  # the body's prompt_cache_key, or Anthropic's metadata.user_id
    ]
    keys = [session_key(headers, body_key) for headers, body_key in forms]
    assert all(key is not None and len(key) == 16 for key in keys)  # digests: no caller text is kept
    assert len(set(keys)) == len(forms)  # the same value under another name is another session
    assert keys == [session_key(headers, body_key) for headers, body_key in forms]
    assert session_key({}, None) is None and session_key({"session-id": ""}, None) is None
    # a header wins over the body: one session, whatever key its requests also carry
    assert session_key({"session-id": "s"}, "other") == keys[1]


def test_the_earlier_turns_come_before_the_session_and_a_subagent_does_not_take_the_session_over():
    """A Claude Code session's main line was answered by one agent, a subagent's request of the same
    session by another: the main line's next turn still goes to the agent that has it in context."""
    from relay._affinity import session_key
    from relay._jobs import Caller

    now = [0.0]
    broker = Broker(max_queue=10, socket_path="/s", timing=Timing(continuation_hold=3.0), clock=lambda: now[0])
    first = FakeWorker(broker, modes=["agent"], agent="serving")
    second = FakeWorker(broker, modes=["agent"], agent="serving")
    key = session_key({"x-claude-code-session-id": "s"}, None)
    main, subagent = Caller(affinity=key, request_class="main"), Caller(affinity=key, request_class="subagent")
    broker.grant(first.handle, 1)
    broker.submit("a", conversation("turn 0"), 5, main)
    broker.on_answer(first.handle, End(id="a", stop_reason="endTurn"))
    broker.grant(second.handle, 1)
    broker.submit("s1", conversation("explore the code"), 5, subagent)  # first has no slot: no hold, it waits
    now[0] = 3.0
    broker.tick(3.0)
    assert second.requests() == ["s1"]
    broker.on_answer(second.handle, End(id="s1", stop_reason="endTurn"))
    broker.grant(second.handle, 1)
    broker.submit("b", conversation("turn 0", "answer", "turn 1"), 5, main)
    assert second.requests() == ["s1"]  # held for first, which has turn 0
    broker.grant(first.handle, 1)
    assert first.requests() == ["a", "b"]


def test_the_characters_handed_add_up_when_a_request_moves_to_another_agent():
    """An agent saw the request (its turn cost the user), then its MCP server went before it answered: the
    request goes to another agent, and what both were handed counts."""
    broker = Broker(max_queue=10, socket_path="/s")
    first = FakeWorker(broker, modes=["agent"], agent="serving")
    broker.grant(first.handle, 1)
    job = broker.submit("a", neutral(), 5)
    broker.accept(first.handle, "a", 1200)
    second = FakeWorker(broker, modes=["agent"], agent="serving")
    broker.remove_worker(first.handle)  # before its start: the request waits for a worker again
    broker.grant(second.handle, 1)
    assert second.requests() == ["a"]
    broker.accept(second.handle, "a", 300)
    broker.accept(second.handle, "a", None)  # a worker that does not say adds nothing
    assert job.handed == 1500
