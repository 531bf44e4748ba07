"""Unit tests of shared_protocol: the line codec and the frame models (no I/O)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared_protocol import (
    PROTOCOL_VERSION,
    End,
    FrameTooLarge,
    Hello,
    LineTooLong,
    NeutralRequest,
    ProtocolError,
    Ready,
    RelayFrameDecoder,
    RequestFrame,
    TextBlock,
    WorkerFrameDecoder,
    WorkerInfo,
    encode,
)
from shared_protocol import Message as NeutralMessage


def test_frames_round_trip_through_one_line_each():
    request = NeutralRequest(
        messages=[NeutralMessage(role="user", content=[TextBlock(text="hi\nthere")])], max_tokens=5
    )
    line = encode(RequestFrame(id="req_1", request=request, timeout=3.0))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    (frame,) = list(RelayFrameDecoder().feed(line))
    assert frame == RequestFrame(id="req_1", request=request, timeout=3.0)


def test_decoder_reassembles_lines_split_anywhere():
    data = encode(Hello(version=PROTOCOL_VERSION, worker=WorkerInfo(client_name="x"))) + encode(Ready(slots=3))
    decoder = WorkerFrameDecoder()
    frames = []
    for i in range(len(data)):
        frames += list(decoder.feed(data[i : i + 1]))
    assert [f.type for f in frames] == ["hello", "ready"]
    assert decoder.buffered == 0


def test_bad_lines_become_errors_and_the_stream_goes_on():
    decoder = WorkerFrameDecoder(max_line_bytes=100)
    items = list(decoder.feed(b'not json\n{"type":"nope"}\n{"type":"ready","slots":0}\n' + b"x" * 300))
    items += list(decoder.feed(b"y" * 50 + b"\n" + encode(End(id="r", stop_reason="endTurn"))))
    assert [type(i) for i in items] == [ProtocolError, ProtocolError, ProtocolError, LineTooLong, End]
    assert "slots" in str(items[2])


def test_decoder_memory_stays_bounded_for_an_endless_line():
    decoder = WorkerFrameDecoder(max_line_bytes=1000)
    errors = []
    for _ in range(100):
        errors += list(decoder.feed(b"z" * 999))
        assert decoder.buffered <= 2000
    assert len(errors) == 1  # one report per bad line, not per chunk


def test_encoding_refuses_lines_over_the_limit():
    with pytest.raises(FrameTooLarge):
        encode(Ready(slots=1), max_line_bytes=10)


def test_unknown_fields_are_ignored_for_forward_compatibility():
    line = json.dumps({"type": "ready", "slots": 2, "added_in_v2": True}).encode() + b"\n"
    assert list(WorkerFrameDecoder().feed(line)) == [Ready(slots=2)]


@given(st.binary(max_size=2000))
def test_decoder_never_raises_on_arbitrary_bytes(data):
    for item in WorkerFrameDecoder(max_line_bytes=500).feed(data):
        assert isinstance(item, (ProtocolError, Ready, Hello, End)) or hasattr(item, "type")


def test_a_bad_frame_is_reported_without_its_content():
    secret = "my confidential prompt"
    line = json.dumps({"type": "request", "id": 5, "request": {"messages": [secret]}}).encode() + b"\n"
    (error,) = list(RelayFrameDecoder().feed(line))
    assert isinstance(error, ProtocolError) and "invalid frame" in str(error)
    assert secret not in str(error) and "confidential" not in str(error)
    garbage = b"not json but " + secret.encode() + b"\n"
    (again,) = list(WorkerFrameDecoder().feed(garbage))
    assert "confidential" not in str(again)
