"""A scripted fake of the Anthropic Messages API, the model behind the real Claude Code CLI in the tests.

Claude Code is pointed at it with ``ANTHROPIC_BASE_URL``. It is a plain asyncio HTTP/1.1 server on
127.0.0.1 (stdlib only), answers ``POST /v1/messages`` with SSE when the body says ``stream: true`` and
with one JSON Message otherwise (the event sequence Claude Code expects: message_start, ping,
content_block_start/delta/stop, message_delta, message_stop), and logs every request it receives to
``LOGDIR/req_NNN.json`` (method, path, headers, body and the decision taken), so a test can check what
Claude Code sent to its model. Anything else gets a 404 in the Anthropic error shape (Claude Code's
``HEAD /`` preflight is fine with that).

The policy is deterministic and plays the agent that serves MCP Token Bridge requests through the
agent-pull tools of the MCP server registered as ``mcptb`` (``mcp__mcptb__next_request`` and
``mcp__mcptb__reply``). It looks at the last user message of the conversation:

a. a tool_result whose text starts with ``request_id:`` (what ``next_request`` returns when it got a
   request): parse the id from that first line and the text of the last ``[user]`` turn of the rendered
   ``conversation:`` (which ends at the line ``(end of conversation)``); call ``mcp__mcptb__reply`` with
   ``{"request_id": <id>, "content": "claude-code answered: <that text>"}``, plus, when the rendering
   lists tools the caller offers, ``tool_calls`` = one call of the first of them with
   ``{"city": "Paris"}``;
b. a tool_result whose text starts with ``Delivered`` (what ``reply`` returns): answer the text
   ``served one request``;
c. any other tool_result of ``next_request`` (no request yet): call ``next_request`` again, at most
   ``FAKE_MAX_POLLS`` times in one conversation (default 3), then answer ``gave up``;
d. no tool_result (the initial prompt): call ``mcp__mcptb__next_request`` with ``{"wait_seconds": 60}``
   (``FAKE_WAIT_SECONDS``). Where Claude Code defers MCP tools (newer versions with their default tools:
   only ``ToolSearch`` is offered, and a system message names ``mcp__mcptb__next_request`` among the
   deferred tools), first call ``ToolSearch`` with ``select:`` both bridge tools; where the bridge is still
   connecting and only ``WaitForMcpServers`` is offered (2.1.197, interactive), call that first. Their
   tool_result is then treated like the initial prompt.

e. with ``FAKE_REPLY_CONTENTS`` (a JSON list of strings) the n-th ``reply`` of the conversation carries
   the n-th of them as its content (the last one repeats), and a ``reply`` refused with "The request is
   still open" (the worker's schema check) is answered by replying again to the same request with the
   next content - the agent correcting its structured answer.

Two more rules keep failures readable instead of looping: a tool_result marked ``is_error`` (or any
other unexpected tool_result) ends the turn with the text ``tool error: <text>``; and an initial prompt
containing ``FAKE_ECHO:`` is answered with the text after it, so the harness can be checked without
the bridge's tools; when ``next_request`` is not among the offered tools the answer says so, listing
the tools that were offered.

Knobs (environment): ``FAKE_WAIT_SECONDS`` and ``FAKE_MAX_POLLS`` (above); ``FAKE_REPLY_REQUEST_ID``
replies to that id instead of the one received, and ``FAKE_REPLY_DELAY`` waits that many seconds before
answering with the reply call (both for the error-path tests); ``FAKE_MCP_SERVER`` is the server name in
the tool names (default ``mcptb``); ``FAKE_ONLY_TOOLS=PREFIX`` makes every request whose tools include
one not named ``PREFIX...`` (a built-in tool of Claude Code, say) end the turn with the text ``tool error:
offered tools beyond PREFIX: [...]``; newer Claude Code's ``DeferredToolPlaceholder`` (no parameters,
"never call this tool", sent even with ``--tools ""``) is not a tool the model can use, and is let through.

usage: python fake_model.py LOGDIR        prints ``READY <port>`` on stdout once listening (port 0).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

SERVER = os.environ.get("FAKE_MCP_SERVER", "mcptb")
NEXT_REQUEST = f"mcp__{SERVER}__next_request"
REPLY = f"mcp__{SERVER}__reply"
MAX_POLLS = int(os.environ.get("FAKE_MAX_POLLS", "3"))
WAIT_SECONDS = int(os.environ.get("FAKE_WAIT_SECONDS", "60"))
REPLY_ID = os.environ.get("FAKE_REPLY_REQUEST_ID")  # reply to this id instead (to test reply's errors)
REPLY_DELAY = float(os.environ.get("FAKE_REPLY_DELAY", "0"))  # "think" this long before calling reply
REPLY_CONTENTS: list[str] = json.loads(os.environ.get("FAKE_REPLY_CONTENTS", "[]"))
ONLY_TOOLS = os.environ.get("FAKE_ONLY_TOOLS")  # every offered tool must have this prefix
TOOL_SEARCH = "ToolSearch"
WAIT_FOR_SERVERS = "WaitForMcpServers"
PLACEHOLDER = "DeferredToolPlaceholder"
STILL_OPEN = "The request is still open"
ANSWER_PREFIX = "claude-code answered: "
TOOL_ARGUMENTS = {"city": "Paris"}
SERVED = "served one request"
GAVE_UP = "gave up"
ECHO = "FAKE_ECHO:"
TURN = re.compile(r"^\[(user|assistant)\]\s*$")
TURN_OR_OTHER = re.compile(r"^\[[a-z_ ]+\]\s*$")
# markers of next_request's rendering (mcp_server/_render.py)
END_OF_CONVERSATION = "(end of conversation)"
TOOLS_HEADING = "tools the caller offers"

Decision = dict[str, Any]


# --- the policy (pure functions, so tests can check them without a socket) ---------------------------


def blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def result_text(block: dict[str, Any]) -> str:
    """The text of a tool_result block (its content is a string or a list of content blocks)."""
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def parse_request(text: str) -> tuple[str, str]:
    """``next_request``'s rendering -> (request id, text of the last ``[user]`` turn of its conversation)."""
    lines = text.splitlines()
    request_id = lines[0].removeprefix("request_id:").strip()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "conversation:") + 1
    except StopIteration:
        raise ValueError(f"no 'conversation:' line in {text!r}") from None
    turns: list[tuple[str, list[str]]] = []
    for line in lines[start:]:
        if line == END_OF_CONVERSATION:
            break
        match = TURN.match(line.strip())
        if match:
            turns.append((match.group(1), []))
        elif TURN_OR_OTHER.match(line.strip()):
            turns.append(("other", []))
        elif turns:
            turns[-1][1].append(line)
    users = [body for role, body in turns if role == "user"]
    if not users:
        raise ValueError(f"no [user] turn in {text!r}")
    return request_id, "\n".join(users[-1]).strip()


def caller_tools(text: str) -> list[str]:
    """The names listed under the rendering's ``tools the caller offers`` heading (``- name: ...``)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(TOOLS_HEADING)), None)
    if start is None:
        return []
    names = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        if line.startswith("- ") and ":" in line:
            names.append(line[2:].split(":", 1)[0].strip())
    return names


def tool_names_by_id(messages: list[dict[str, Any]]) -> dict[str, str]:
    return {
        b["id"]: b.get("name", "")
        for m in messages
        if m.get("role") == "assistant"
        for b in blocks(m)
        if b.get("type") == "tool_use" and "id" in b
    }


def decide(body: dict[str, Any]) -> Decision:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    users = [m for m in messages if m.get("role") == "user"]
    last = blocks(users[-1]) if users else []
    results = [b for b in last if b.get("type") == "tool_result"]
    offered = sorted(t.get("name", "") for t in body.get("tools") or [] if isinstance(t, dict))
    if ONLY_TOOLS is not None and any(not name.startswith(ONLY_TOOLS) for name in offered if name != PLACEHOLDER):
        return {"kind": "text", "text": f"tool error: offered tools beyond {ONLY_TOOLS}: {offered}"}
    result = results[-1] if results else None
    text = result_text(result) if result else ""
    tool = tool_names_by_id(messages).get(result.get("tool_use_id", ""), "") if result else ""
    if result is None or (tool in (TOOL_SEARCH, WAIT_FOR_SERVERS) and not result.get("is_error")):
        prompt = " ".join(b.get("text", "") for b in last if b.get("type") == "text")
        if ECHO in prompt:
            return {"kind": "text", "text": prompt.split(ECHO, 1)[1].strip()}
        if NEXT_REQUEST in offered:
            return {"kind": "tool_use", "name": NEXT_REQUEST, "input": {"wait_seconds": WAIT_SECONDS}}
        if result is None and TOOL_SEARCH in offered:
            query = f"select:{NEXT_REQUEST},{REPLY}"
            return {"kind": "tool_use", "name": TOOL_SEARCH, "input": {"query": query, "max_results": 5}}
        if result is None and WAIT_FOR_SERVERS in offered:
            return {"kind": "tool_use", "name": WAIT_FOR_SERVERS, "input": {}}
        return {"kind": "text", "text": f"{NEXT_REQUEST} is not offered; tools: {offered}"}
    assert result is not None
    replies = [
        b["input"]
        for m in messages
        if m.get("role") == "assistant"
        for b in blocks(m)
        if b.get("type") == "tool_use" and b.get("name") == REPLY
    ]
    if result.get("is_error") and tool == REPLY and STILL_OPEN in text and REPLY_CONTENTS:
        content = REPLY_CONTENTS[min(len(replies), len(REPLY_CONTENTS) - 1)]
        return {
            "kind": "tool_use",
            "name": REPLY,
            "input": {"request_id": replies[-1]["request_id"], "content": content},
        }
    if result.get("is_error"):
        return {"kind": "text", "text": f"tool error: {text}"}
    if tool == NEXT_REQUEST and text.startswith("request_id:"):
        try:
            request_id, user_text = parse_request(text)
        except ValueError as error:
            return {"kind": "text", "text": f"tool error: cannot parse the request: {error}"}
        content = REPLY_CONTENTS[0] if REPLY_CONTENTS else ANSWER_PREFIX + user_text
        reply: dict[str, Any] = {"request_id": REPLY_ID or request_id, "content": content}
        offered_by_caller = caller_tools(text)
        if offered_by_caller:
            reply["tool_calls"] = [{"name": offered_by_caller[0], "arguments": TOOL_ARGUMENTS}]
        return {"kind": "tool_use", "name": REPLY, "input": reply}
    if tool == REPLY and text.startswith("Delivered"):
        return {"kind": "text", "text": SERVED}
    if tool == NEXT_REQUEST:
        polls = sum(
            1
            for m in messages
            if m.get("role") == "assistant"
            for b in blocks(m)
            if b.get("type") == "tool_use" and b.get("name") == NEXT_REQUEST
        )
        if polls >= MAX_POLLS:
            return {"kind": "text", "text": GAVE_UP}
        return {"kind": "tool_use", "name": NEXT_REQUEST, "input": {"wait_seconds": WAIT_SECONDS}}
    return {"kind": "text", "text": f"tool error: unexpected result of {tool or 'an unknown tool'}: {text}"}


# --- the Anthropic wire shapes ---------------------------------------------------------------------


def message_json(body: dict[str, Any], decision: Decision, n: int) -> dict[str, Any]:
    if decision["kind"] == "text":
        content: list[dict[str, Any]] = [{"type": "text", "text": decision["text"]}]
        stop = "end_turn"
    else:
        content = [
            {
                "type": "tool_use",
                "id": f"toolu_fake{n:04d}",
                "name": decision["name"],
                "input": decision["input"],
            }
        ]
        stop = "tool_use"
    return {
        "id": f"msg_fake{n:04d}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-fake"),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def sse_events(body: dict[str, Any], decision: Decision, n: int) -> list[tuple[str, dict[str, Any]]]:
    message = message_json(body, decision, n)
    start = dict(message, content=[], stop_reason=None, usage=dict(message["usage"], output_tokens=1))
    block = message["content"][0]
    if block["type"] == "text":
        opening = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": block["text"]}
    else:
        opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    return [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": opening}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


# --- the server ------------------------------------------------------------------------------------


class FakeModel:
    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.counter = itertools.count(1)

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[str, str, list[list[str]], bytes] | None:
        line = await reader.readline()
        if not line.strip():
            return None
        method, path, _ = line.decode("latin-1").strip().split(" ", 2)
        headers: list[list[str]] = []
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, value = raw.decode("latin-1").rstrip("\r\n").split(":", 1)
            headers.append([name.strip(), value.strip()])
        lowered = {k.lower(): v for k, v in headers}
        body = b""
        if "content-length" in lowered:
            body = await reader.readexactly(int(lowered["content-length"]))
        elif lowered.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readline()).strip().split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                body += await reader.readexactly(size)
                await reader.readline()
        return method, path, headers, body

    async def send(self, writer: asyncio.StreamWriter, status: str, payload: bytes, head_only: bool) -> None:
        head = (
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
            "request-id: req_fake\r\n\r\n"
        )
        writer.write(head.encode() + (b"" if head_only else payload))
        await writer.drain()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await self.read_request(reader)) is not None:
                await self.answer(writer, *request)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def answer(
        self, writer: asyncio.StreamWriter, method: str, path: str, headers: list[list[str]], raw: bytes
    ) -> None:
        n = next(self.counter)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = {"_raw": raw.decode("utf-8", "replace")}
        record: dict[str, Any] = {
            "n": n,
            "t": time.time(),
            "method": method,
            "path": path,
            "headers": headers,
            "body": body,
        }
        is_messages = method == "POST" and path.split("?")[0].endswith("/v1/messages")
        if is_messages and isinstance(body, dict):
            decision = decide(body)
            record["decision"] = decision
        partial = self.logdir / f".req_{n:03d}.json.partial"  # readers only ever see whole records
        partial.write_text(json.dumps(record, indent=1))
        partial.replace(self.logdir / f"req_{n:03d}.json")
        print(f"[fake] #{n} {method} {path} -> {record.get('decision')}", file=sys.stderr, flush=True)
        if not (is_messages and isinstance(body, dict)):
            error = {
                "type": "error",
                "error": {"type": "not_found_error", "message": f"fake: no {method} {path}"},
            }
            await self.send(writer, "404 Not Found", json.dumps(error).encode(), method == "HEAD")
            return
        if decision.get("name") == REPLY and REPLY_DELAY:
            await asyncio.sleep(REPLY_DELAY)
        if not body.get("stream"):
            await self.send(writer, "200 OK", json.dumps(message_json(body, decision, n)).encode(), False)
            return
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\nrequest-id: req_fake\r\n\r\n"
        )
        for event, data in sse_events(body, decision, n):
            frame = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
            writer.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def main(logdir: Path) -> None:
    logdir.mkdir(parents=True, exist_ok=True)
    fake = FakeModel(logdir)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: fake_model.py LOGDIR")
    try:
        asyncio.run(main(Path(sys.argv[1])))
    except KeyboardInterrupt:
        pass
