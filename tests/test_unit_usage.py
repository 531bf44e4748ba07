"""The token estimate (relay/_usage.py) against a real tokenizer: OpenAI's o200k_base, from the tiktoken
files litellm ships (no download). MCP clients report no token counts, so this estimate is what the
user sees of what they spend; it must stay close on prose, code, JSON and non-Latin text alike."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from relay._usage import request_tokens, text_tokens
from shared_protocol import Message, NeutralRequest, TextBlock, ToolSpec

ROOT = Path(__file__).resolve().parent.parent
TOOL = {
    "type": "object",
    "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["path"],
}
CORPUS = {
    "prose (README.md)": (ROOT / "README.md").read_text(),
    "prose (docs/apis.md)": (ROOT / "docs" / "apis.md").read_text(),
    "Python (relay/_app.py)": (ROOT / "relay" / "_app.py").read_text(),
    "Python (relay/_broker.py)": (ROOT / "relay" / "_broker.py").read_text(),
    "a 1,000-character sentence": ("The quick brown fox jumps over the lazy dog. " * 23)[:1000],
    "tool schemas (JSON)": json.dumps([{"name": f"read_{i}", "input_schema": TOOL} for i in range(30)]),
    "Chinese": "这是一个测试。我们正在测量令牌数量的估计有多准确。" * 50,
    "a short chat": "Hello! Can you help me write a function that sorts a list of numbers in Python? Thanks." * 20,
}


@pytest.fixture(scope="module")
def o200k():
    import litellm

    bundled = Path(litellm.__file__).parent / "litellm_core_utils" / "tokenizers"
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled))
    tiktoken = pytest.importorskip("tiktoken")
    return tiktoken.get_encoding("o200k_base")


@pytest.mark.parametrize("name", list(CORPUS))
def test_the_estimate_is_within_a_quarter_of_a_real_tokenizer(o200k, name):
    text = CORPUS[name]
    real = len(o200k.encode(text, disallowed_special=()))
    assert abs(text_tokens(text) / real - 1) < 0.25, (name, text_tokens(text), real)


def test_characters_over_four_was_far_off_on_chinese_and_the_estimate_is_not(o200k):
    text = CORPUS["Chinese"]
    real = len(o200k.encode(text))
    assert (len(text) / 4) / real < 0.5 and 0.9 < text_tokens(text) / real < 1.25


def test_a_request_counts_its_system_messages_and_tools():
    tool = ToolSpec(name="read", description="Reads a file", input_schema=TOOL)
    request = NeutralRequest(
        system="Be brief.", messages=[Message(role="user", content=[TextBlock(text="Hello there")])], max_tokens=5
    )
    with_tool = NeutralRequest(
        system="Be brief.",
        messages=[Message(role="user", content=[TextBlock(text="Hello there")])],
        tools=[tool],
        max_tokens=5,
    )
    assert request_tokens(request) == round(text_tokens("Be brief.") + text_tokens("Hello there"))
    assert request_tokens(with_tool) > request_tokens(request) + 10
