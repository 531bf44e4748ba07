"""The admission core (relay/_admission.py): which connection makes room at the limit, and the shared
body-memory bound, as sequences of calls with an injected clock."""

from __future__ import annotations

from relay._admission import HEAD_GRACE, Admission


def table(limit: int = 3, memory: int = 100) -> tuple[Admission, list[str], list[float]]:
    now = [0.0]
    closed: list[str] = []
    return Admission(limit, memory, lambda: now[0]), closed, now


def test_at_the_limit_the_longest_idle_connection_makes_room_then_the_longest_dripping_head():
    admission, closed, now = table()
    busy = admission.connect(lambda: closed.append("busy"))
    idle_old = admission.connect(lambda: closed.append("idle old"))
    idle_new = admission.connect(lambda: closed.append("idle new"))
    assert busy and idle_old and idle_new
    admission.enter(busy, "busy")
    admission.enter(idle_old, "idle")
    now[0] = 1
    admission.enter(idle_new, "idle")
    assert admission.connect(lambda: closed.append("fourth")) is not None
    assert closed == ["idle old"]
    assert admission.connect(lambda: closed.append("fifth")) is not None
    assert closed == ["idle old", "idle new"]
    # now: busy + two fresh heads; a head is replaced only once it has dripped past HEAD_GRACE
    assert admission.connect(lambda: closed.append("sixth")) is None
    now[0] += HEAD_GRACE
    assert admission.connect(lambda: closed.append("seventh")) is not None
    assert closed == ["idle old", "idle new", "fourth"]


def test_connections_reading_a_body_or_being_answered_never_make_room():
    admission, closed, now = table(limit=2)
    body = admission.connect(lambda: closed.append("body"))
    busy = admission.connect(lambda: closed.append("busy"))
    assert body and busy
    admission.enter(body, "body")
    admission.enter(busy, "busy")
    now[0] = 1000
    assert admission.connect(lambda: closed.append("new")) is None and closed == []


def test_bodies_share_the_memory_bound_and_give_it_back_when_received_or_gone():
    admission, _, _ = table(memory=100)
    first = admission.connect(lambda: None)
    second = admission.connect(lambda: None)
    assert first and second
    assert admission.take_body(first, 60)
    assert not admission.take_body(second, 50)  # 110 > 100
    assert admission.take_body(second, 40)
    admission.body_received(first)
    assert admission.body_memory == 40
    admission.disconnect(second)  # abandoned mid-body
    assert admission.body_memory == 0


def test_entering_the_same_phase_again_keeps_when_it_began():
    """The HTTP side reports idle when a response is whole and again when it waits for the next request:
    the connection's place in the idle order is the first."""
    admission, closed, now = table(limit=2)
    first = admission.connect(lambda: closed.append("first"))
    second = admission.connect(lambda: closed.append("second"))
    assert first and second
    admission.enter(first, "idle")
    now[0] = 1
    admission.enter(second, "idle")
    now[0] = 2
    admission.enter(first, "idle")  # the same phase again, later
    assert admission.connect(lambda: None) is not None
    assert closed == ["first"]
