"""Unit tests of shared_protocol: the line codec and the frame models (no I/O)."""

from __future__ import annotations

import json
import subprocess
import sys

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


def _nest(levels: int) -> dict[str, object]:
    """An object ``levels`` deep: ``{"a": {"a": ... {}}}``."""
    node: dict[str, object] = {}
    for _ in range(levels - 1):
        node = {"a": node}
    return node


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


def _every_frame() -> list[object]:
    """One of each frame, with every optional field set, so a round trip checks every reader."""
    from shared_protocol import (
        Accepted,
        Cancel,
        ErrorFrame,
        ImageBlock,
        OutputFormat,
        Refused,
        Release,
        Start,
        TextDelta,
        TokenUsage,
        ToolCall,
        ToolChoice,
        ToolResultBlock,
        ToolSpec,
        ToolUseBlock,
        Update,
        Welcome,
        Withdraw,
    )

    info = WorkerInfo(
        client_name="c",
        client_version="1",
        protocol_version="2025-11-25",
        modes=["sampling", "agent"],
        sampling_tools=True,
        tools=True,
        models=["m1", "m2"],
        concurrency=4,
        agent="away",
        sampling_unavailable="why",
        pid=12,
        session="s",
    )
    request = NeutralRequest(
        model="m",
        system="be brief",
        messages=[
            NeutralMessage(
                role="user", content=[TextBlock(text="héllo \u2028"), ImageBlock(data="AA==", mime_type="image/png")]
            ),
            NeutralMessage(role="assistant", content=[ToolUseBlock(id="t1", name="f", input={"a": [1, 2.5, None]})]),
            NeutralMessage(
                role="user",
                content=[ToolResultBlock(tool_use_id="t1", content=[TextBlock(text="ok")], is_error=True)],
            ),
        ],
        tools=[
            ToolSpec(name="f", description="d", input_schema={"type": "object"}, strict=True),
            ToolSpec(name="g", input_schema={}),
        ],
        tool_choice=ToolChoice(mode="required", name="f"),
        max_tokens=7,
        temperature=0.5,
        top_p=1.0,
        stop_sequences=["\n\n"],
        output_format=OutputFormat(type="json_schema", name="n", json_schema={"type": "object"}, strict=True),
    )
    return [
        Hello(version=PROTOCOL_VERSION, worker=info),
        Hello(version=PROTOCOL_VERSION, worker=WorkerInfo()),
        Update(worker=info),
        Ready(slots=1024),
        Withdraw(slots=2),
        Release(id="r"),
        Accepted(id="r"),
        Accepted(id="r", handed=12_345),
        Start(id="r", model="m"),
        TextDelta(id="r", text="\x00 text \U0001f600"),
        ToolCall(id="r", call_id="c", name="f", arguments={"x": {"y": []}}),
        End(id="r", stop_reason="toolUse"),
        End(id="r", stop_reason="endTurn", usage=TokenUsage(input_tokens=0, output_tokens=2**53)),
        ErrorFrame(code="bad_frame", message="m"),
        ErrorFrame(id="r", code="invalid_answer", message="m"),
        Welcome(version=PROTOCOL_VERSION, worker_id="w1"),
        Refused(code="busy", message="m"),
        RequestFrame(id="r", request=request, timeout=1.5),
        RequestFrame(
            id="r", request=NeutralRequest(messages=[], max_tokens=1, tool_choice=ToolChoice(mode="none")), timeout=2.0
        ),
        Cancel(id="r", reason="gone"),
    ]


@pytest.mark.parametrize("frame", _every_frame(), ids=lambda f: type(f).__name__)
def test_every_frame_reads_back_equal_to_what_was_written(frame):
    line = encode(frame)  # type: ignore[arg-type]
    decoder = WorkerFrameDecoder() if type(frame).__name__ in _WORKER_KINDS else RelayFrameDecoder()
    (back,) = list(decoder.feed(line))
    assert back == frame
    assert encode(back) == line


_WORKER_KINDS = {"Hello", "Update", "Ready", "Withdraw", "Release", "Accepted", "Start", "TextDelta", "ToolCall", "End"}


def _request_line(**changes: object) -> bytes:
    request: dict[str, object] = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "secret words"}]}],
        "max_tokens": 5,
    }
    request.update(changes)
    return json.dumps({"type": "request", "id": "r", "timeout": 1, "request": request}).encode() + b"\n"


@pytest.mark.parametrize(
    ("line", "named"),
    [
        (b'{"type": "ready", "slots": true}\n', "slots"),
        (b'{"type": "ready", "slots": 1.0}\n', "slots"),
        (b'{"type": "ready", "slots": 1025}\n', "slots"),
        (b'{"type": "start", "id": "r"}\n', "model"),
        (b'{"type": "start", "id": 5, "model": "m"}\n', "id"),
        (b'{"type": "end", "id": "r", "stop_reason": "done"}\n', "stop_reason"),
        (
            b'{"type": "end", "id": "r", "stop_reason": "endTurn", "usage": {"input_tokens": 1}}\n',
            "usage.output_tokens",
        ),
        (b'{"type": "end", "id": "r", "stop_reason": "endTurn", "usage": [1, 2]}\n', "usage"),
        (b'{"type": "accepted", "id": "r", "handed": -1}\n', "handed"),
        (b'{"type": "accepted", "id": "r", "handed": "lots"}\n', "handed"),
        (b'{"type": "error", "id": "r", "code": "whatever", "message": "m"}\n', "code"),
        (b'{"type": "tool_call", "id": "r", "call_id": "c", "name": "f", "arguments": []}\n', "arguments"),
        (b'{"type": "hello", "version": 2}\n', "worker"),
        (b'{"type": "hello", "version": 2, "worker": {"modes": ["telepathy"]}}\n', "worker.modes[0]"),
        (b'{"type": "hello", "version": 2, "worker": {"agent": "asleep"}}\n', "worker.agent"),
        (b'{"type": "welcome", "version": 2, "worker_id": "w"}\n', "type"),
        (b"[1, 2]\n", "object"),
        (_request_line(max_tokens=0), "request.max_tokens"),
        (_request_line(surprise=1), "request.surprise"),
        (_request_line(temperature="hot"), "request.temperature"),
        (_request_line(messages=[{"role": "system", "content": []}]), "request.messages[0].role"),
        (
            _request_line(messages=[{"role": "user", "content": [{"type": "text", "text": 3}]}]),
            "request.messages[0].content[0].text",
        ),
        (
            _request_line(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "tool_use", "id": "x", "name": "n", "input": {}}],
                            }
                        ],
                    }
                ]
            ),
            "request.messages[0].content[0].content[0].type",
        ),
        (_request_line(tool_choice={"mode": "sometimes"}), "request.tool_choice.mode"),
        (_request_line(stop_sequences=["a", 1]), "request.stop_sequences[1]"),
    ],
)
def test_a_frame_with_a_wrong_field_is_an_error_naming_that_field(line, named):
    decoder = WorkerFrameDecoder() if b'"request"' not in line and b"welcome" not in line else RelayFrameDecoder()
    if b"welcome" in line:
        decoder = WorkerFrameDecoder()  # a relay's frame from a worker: not a type a worker sends
    (error,) = list(decoder.feed(line))
    assert isinstance(error, ProtocolError), error
    assert named in str(error) and "secret" not in str(error)


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 100_000 + b"\n",
        b'{"type": "ready", "slots": ' + b"9" * 5_000 + b"}\n",
        b'{"type": "ready", "slots": NaN}\n',
        b'{"type": "tool_call", "id": "r", "call_id": "c", "name": "f", "arguments": {"secret": 1e999}}\n',
        b'{"type": "text", "id": "r", "text": "secret \\ud800 words"}\n',
        b'{"type": "text", "id": "r", "text": "secret \xff words"}\n',
    ],
    ids=["deep", "huge-int", "nan", "a number past a float", "lone-surrogate", "not-utf8"],
)
def test_hostile_json_is_one_bad_frame_and_the_stream_goes_on(line):
    decoder = WorkerFrameDecoder()
    error, ready = list(decoder.feed(line + encode(Ready(slots=2))))
    assert isinstance(error, ProtocolError) and "secret" not in str(error)
    assert ready == Ready(slots=2)


def test_a_surrogate_pair_escaped_by_another_encoder_is_one_character():
    (frame,) = list(WorkerFrameDecoder().feed(b'{"type": "text", "id": "r", "text": "\\ud83d\\ude00"}\n'))
    assert frame.text == "\U0001f600"


@pytest.mark.real
def test_the_relay_side_of_the_protocol_imports_no_validation_library():
    code = (
        "import sys, relay._server; print(sorted(m for m in ('pydantic', 'pydantic_core', 'mcp') if m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


@pytest.mark.parametrize(
    ("line", "named"),
    [
        (b'{"type": [1], "id": "r"}\n', "type"),
        (b'{"type": {"a": 1}, "id": "r"}\n', "type"),
        (
            json.dumps({"type": "tool_call", "id": "r", "call_id": "c", "name": "f", "arguments": _nest(65)}).encode()
            + b"\n",
            "arguments",
        ),
    ],
    ids=["a list as type", "an object as type", "arguments 65 levels deep"],
)
def test_a_frame_that_could_crash_its_reader_is_one_bad_frame(line, named):
    (error,) = list(WorkerFrameDecoder().feed(line))
    assert isinstance(error, ProtocolError) and named in str(error)


def test_arguments_64_levels_deep_are_read():
    line = json.dumps({"type": "tool_call", "id": "r", "call_id": "c", "name": "f", "arguments": _nest(64)})
    (frame,) = list(WorkerFrameDecoder().feed(line.encode() + b"\n"))
    assert frame.arguments == _nest(64)


def test_an_unreadable_request_still_names_its_id_so_it_can_be_answered():
    line = json.dumps({"type": "request", "id": "req_7", "timeout": 1, "request": {"messages": [], "max_tokens": 0}})
    (error,) = list(RelayFrameDecoder().feed(line.encode() + b"\n"))
    assert isinstance(error, ProtocolError) and error.request_id == "req_7"
    (other,) = list(RelayFrameDecoder().feed(b'{"type": "cancel", "id": "req_7"}\n'))
    assert isinstance(other, ProtocolError) and other.request_id is None  # only a request is answered
