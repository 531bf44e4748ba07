"""The conversation store alone (relay/_store.py): bounded by count and by bytes, least recently used
out first, 0 = off, and the conversation it keeps after an answer. No app, no socket: the adapters'
continuations are unit-tested in test_unit_api_responses.py and test_unit_api_anthropic.py, and end to
end through the SDKs in test_continuations.py."""

from __future__ import annotations

from relay._collect import Answer
from relay._store import ConversationStore, Keep, Stored, answer_blocks
from shared_protocol import Message, TextBlock, ToolCall, ToolSpec, ToolUseBlock, wire_json


def entry(text: str = "x") -> Stored:
    return Stored(None, (Message(role="user", content=[TextBlock(text=text)]),))


def size_of(text: str) -> int:
    return entry(text).size


def test_size_is_the_conversation_as_json_in_bytes():
    message = Message(role="user", content=[TextBlock(text="héllo")])
    tool = ToolSpec(name="f", input_schema={"type": "object"})
    stored = Stored("sÿstem", (message,), (tool,))
    assert stored.size == len("sÿstem".encode()) + len(wire_json(message.to_wire()).encode()) + len(
        wire_json(tool.to_wire()).encode()
    )
    assert size_of("é") == size_of("e") + 1  # bytes, not characters


def test_eviction_by_count_drops_the_least_recently_used():
    store = ConversationStore(max_entries=2, max_bytes=10_000)
    store.put("a", entry())
    store.put("b", entry())
    assert store.get("a") is not None  # a is now more recent than b
    store.put("c", entry())
    assert "b" not in store and "a" in store and "c" in store and len(store) == 2


def test_eviction_by_bytes_keeps_the_total_under_the_bound():
    one = size_of("aaaa")
    store = ConversationStore(max_entries=100, max_bytes=2 * one + one // 2)
    for key in "abc":
        assert store.put(key, entry("aaaa"))
        assert store.bytes <= store.max_bytes
    assert [k for k in "abc" if k in store] == ["b", "c"] and store.bytes == 2 * one
    store.get("b")
    store.put("d", entry("aaaa"))
    assert [k for k in "abcd" if k in store] == ["b", "d"]


def test_an_entry_over_the_byte_bound_is_not_stored_and_evicts_nothing():
    store = ConversationStore(max_entries=10, max_bytes=size_of("x") + 5)
    store.put("small", entry("x"))
    assert not store.put("big", entry("x" * 100))
    assert "big" not in store and "small" in store and store.bytes == size_of("x")


def test_storing_a_key_again_replaces_it_and_its_bytes():
    store = ConversationStore(max_entries=10, max_bytes=10_000)
    store.put("a", entry("short"))
    store.put("a", entry("a longer text"))
    assert len(store) == 1 and store.bytes == size_of("a longer text")
    store.put("a", entry("x" * 20_000))  # too big now: the old one goes too, never a stale answer
    assert "a" not in store and store.bytes == 0


def test_zero_for_either_bound_switches_it_off():
    for entries, size in ((0, 1000), (10, 0), (0, 0)):
        store = ConversationStore(entries, size)
        assert not store.enabled
        assert not store.put("a", entry())
        assert store.get("a") is None and len(store) == 0 and store.bytes == 0


def test_unknown_keys_are_none():
    assert ConversationStore(10, 10_000).get("resp_nope") is None


def test_an_answer_is_kept_as_the_last_assistant_turn_with_its_tool_calls():
    keep = Keep("k", "be brief", (Message(role="user", content=[TextBlock(text="weather?")]),))
    call = ToolCall(id="j", call_id="call_1", name="get_weather", arguments={"city": "Paris"})
    answer = Answer(model="m", text=["Let me ", "check."], tool_calls=[call], stop_reason="toolUse")
    stored = keep.answered(answer)
    assert stored.system == "be brief"
    assert [m.role for m in stored.messages] == ["user", "assistant"]
    assert stored.messages[1].content == [
        TextBlock(text="Let me check."),
        ToolUseBlock(id="call_1", name="get_weather", input={"city": "Paris"}),
    ]


def test_an_answer_to_a_prefilled_assistant_turn_joins_it():
    prefill = (
        Message(role="user", content=[TextBlock(text="count")]),
        Message(role="assistant", content=[TextBlock(text="1, 2,")]),
    )
    stored = Keep("k", None, prefill).answered(Answer(model="m", text=[" 3"]))
    assert [m.role for m in stored.messages] == ["user", "assistant"]
    assert stored.messages[1].content == [TextBlock(text="1, 2,"), TextBlock(text=" 3")]
    assert prefill[1].content == [TextBlock(text="1, 2,")]  # what was kept before is never changed


def test_an_empty_answer_adds_no_turn():
    assert answer_blocks(Answer(model="m")) == []
    keep = Keep("k", None, (Message(role="user", content=[TextBlock(text="x")]),))
    assert len(keep.answered(Answer(model="m")).messages) == 1


def test_no_entry_or_continuation_is_larger_than_one_request_may_be():
    store = ConversationStore(max_entries=10, max_bytes=10_000, max_entry_bytes=size_of("x" * 50))
    assert store.put("fits", entry("x" * 50)) and not store.put("over", entry("x" * 51))
    earlier = store.get("fits")
    assert earlier is not None and store.fits(earlier, 0) and not store.fits(earlier, 1)
    assert "--max-body-bytes" in store.too_long(earlier, 1)
    assert ConversationStore(10, 100, max_entry_bytes=1000).max_entry_bytes == 100  # never over the whole budget
