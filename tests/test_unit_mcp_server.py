"""Unit tests of mcptb-server pieces that need no MCP client: model ids and the neutral -> sampling
conversion (the worker's decisions are tested in test_unit_worker_core.py)."""

from __future__ import annotations

from mcp_server._client import model_id_for
from mcp_server._sampling import to_sampling_messages
from shared_protocol import Message, TextBlock, ToolResultBlock, ToolUseBlock


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
