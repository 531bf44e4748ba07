"""Scripted model APIs for agent CLIs that serve the bridge: the OpenAI Responses API (Codex CLI) and the
Gemini API (Gemini CLI, ``GOOGLE_GEMINI_BASE_URL``), played by one deterministic serving agent.

:class:`ServingAgent` sees the conversation as calls and results of the bridge's tools by their bare
names (``next_request``, ``reply``) and decides, like ``claude_code/fake_model.py`` does for Claude Code:
no tool result yet, or a user message after the last one (a Stop hook's reminder) -> call ``next_request`` (with ``next_args``, ``{}`` by default: the model relies on
the default wait); a request -> ``reply`` with ``claude-code answered: <last user text>`` (the prefix is
shared with the Claude Code fake); ``Delivered`` -> the text ``served one request``; no request yet ->
``next_request`` again, at most ``max_polls`` calls in all, then the text ``gave up: <that result>``; a
tool error or anything else -> ``tool error: <text>``.

:class:`ScriptedApis` is a stdlib HTTP server on 127.0.0.1 in a thread: ``POST /v1/responses``
(streamed: created, output_item.added/done, completed) and ``POST /v1beta/models/<m>:generateContent``
/ ``:streamGenerateContent`` (``alt=sse``) / ``:countTokens``. Gemini CLI also asks its model small
side questions without tools (routing, with a JSON schema): those get an object made from the schema,
or ``OK``. Every request is kept (path, body, decision) for the test's assertions.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from claude_code.fake_model import ANSWER_PREFIX, SERVED, parse_request

NEXT_REQUEST = "next_request"
REPLY = "reply"
GAVE_UP = "gave up"
UNTRUSTED = ("<untrusted_context>\n", "\n</untrusted_context>")
Decision = dict[str, Any]


@dataclass(frozen=True)
class Step:
    kind: str  # "call", "result", or "prompt" (a user message after the first: a Stop hook's reminder)
    tool: str  # the bridge tool's bare name, or the name as sent for anything else
    text: str = ""
    error: bool = False


@dataclass
class ServingAgent:
    next_args: dict[str, Any] = field(default_factory=dict)
    max_polls: int = 3

    def decide(self, steps: list[Step]) -> Decision:
        results = [s for s in steps if s.kind == "result"]
        if not results or steps[-1].kind == "prompt":
            return {"kind": "call", "name": NEXT_REQUEST, "args": dict(self.next_args)}
        last = results[-1]
        if last.error:
            return {"kind": "text", "text": f"tool error: {last.text}"}
        if last.tool == NEXT_REQUEST and last.text.startswith("request_id:"):
            try:
                request_id, user_text = parse_request(last.text)
            except ValueError as error:
                return {"kind": "text", "text": f"tool error: cannot parse the request: {error}"}
            return {
                "kind": "call",
                "name": REPLY,
                "args": {"request_id": request_id, "content": ANSWER_PREFIX + user_text},
            }
        if last.tool == REPLY and last.text.startswith("Delivered"):
            return {"kind": "text", "text": SERVED}
        if last.tool == NEXT_REQUEST:
            polls = sum(1 for s in steps if s.kind == "call" and s.tool == NEXT_REQUEST)
            if polls >= self.max_polls:
                return {"kind": "text", "text": f"{GAVE_UP}: {last.text}"}
            return {"kind": "call", "name": NEXT_REQUEST, "args": dict(self.next_args)}
        return {"kind": "text", "text": f"tool error: unexpected result of {last.tool}: {last.text}"}


def _texts(value: Any) -> list[str]:
    """Every string under ``text``/``output``/``error`` keys (or a bare string), in order."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    if isinstance(value, dict):
        return [t for key in ("text", "output", "error", "content") if key in value for t in _texts(value[key])]
    return []


def _schema_value(schema: Any) -> Any:
    """A value that fits a (Gemini-style, upper-case types) JSON schema: for side questions."""
    kind = str((schema or {}).get("type", "object")).lower()
    if kind == "object":
        return {name: _schema_value(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return False
    enum = schema.get("enum")
    return enum[0] if enum else "ok"


# --- OpenAI Responses (Codex CLI) ------------------------------------------------------------------


def responses_steps(body: dict[str, Any]) -> tuple[list[Step], str | None]:
    """The bridge's steps in a Responses request, and the namespace its tools are offered under."""
    namespace = None
    for tool in body.get("tools") or []:
        if tool.get("type") == "namespace" and any(t.get("name") == NEXT_REQUEST for t in tool.get("tools") or []):
            namespace = tool["name"]
    names: dict[str, str] = {}
    steps: list[Step] = []
    for item in body.get("input") or []:
        if item.get("type") == "message" and item.get("role") == "user" and steps:
            steps.append(Step("prompt", "user"))
        elif item.get("type") == "function_call":
            name = item.get("name", "") if item.get("namespace") == namespace else item.get("name", "?")
            names[item.get("call_id", "")] = name
            steps.append(Step("call", name))
        elif item.get("type") == "function_call_output":
            text = "\n".join(_texts(item.get("output")))
            if text.startswith("Wall time:") and "\nOutput:\n" in text:  # how Codex wraps a tool's result
                text = text.split("\nOutput:\n", 1)[1]
            steps.append(Step("result", names.get(item.get("call_id", ""), "?"), text))
    return steps, namespace


def responses_events(decision: Decision, namespace: str | None, n: int) -> list[dict[str, Any]]:
    if decision["kind"] == "call":
        item: dict[str, Any] = {
            "id": f"fc_{n}",
            "type": "function_call",
            "status": "completed",
            "call_id": f"call_{n}",
            "name": decision["name"],
            "arguments": json.dumps(decision["args"]),
        }
        if namespace:
            item["namespace"] = namespace
    else:
        item = {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": decision["text"], "annotations": []}],
        }
    response = {"id": f"resp_{n}", "object": "response", "status": "in_progress", "output": [], "usage": None}
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }
    done = {**response, "status": "completed", "output": [item], "usage": usage}
    events = [
        {"type": "response.created", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "status": "in_progress"}},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    return [{**e, "sequence_number": i} for i, e in enumerate(events)]


# --- Gemini API (Gemini CLI) -----------------------------------------------------------------------


def gemini_steps(body: dict[str, Any], prefix: str) -> list[Step]:
    steps: list[Step] = []
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            if "functionCall" in part:
                steps.append(Step("call", part["functionCall"].get("name", "").removeprefix(prefix)))
            elif "functionResponse" in part:
                response = part["functionResponse"]
                inner = response.get("response") or {}
                text = "\n".join(_texts(inner))
                if text.startswith(UNTRUSTED[0]) and text.endswith(UNTRUSTED[1]):  # how Gemini CLI wraps MCP results
                    text = text[len(UNTRUSTED[0]) : -len(UNTRUSTED[1])]
                error = isinstance(inner, dict) and "error" in inner
                steps.append(Step("result", response.get("name", "").removeprefix(prefix), text, error))
    return steps


def gemini_offers(body: dict[str, Any], prefix: str) -> bool:
    return any(
        d.get("name") == prefix + NEXT_REQUEST
        for tool in body.get("tools") or []
        for d in tool.get("functionDeclarations") or []
    )


def gemini_answer(decision: Decision, prefix: str) -> dict[str, Any]:
    if decision["kind"] == "call":
        part: dict[str, Any] = {"functionCall": {"name": prefix + decision["name"], "args": decision["args"]}}
    else:
        part = {"text": decision["text"]}
    return {
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": "scripted",
    }


# --- the server -------------------------------------------------------------------------------------


class ScriptedApis:
    def __init__(self, agent: ServingAgent, gemini_prefix: str = "mcp_mcptb_") -> None:
        self.agent = agent
        self.gemini_prefix = gemini_prefix
        self.requests: list[dict[str, Any]] = []
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        apis = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._json(404, {"error": {"message": f"scripted: no GET {self.path}"}})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                status, payload, stream = apis.answer(self.path, body)
                if stream is None:
                    self._json(status, payload)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                for event in stream:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
                self.close_connection = True

            def _json(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="scripted-apis", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, body: Any) -> tuple[int, Any, list[dict[str, Any]] | None]:
        n = next(self._counter)
        record: dict[str, Any] = {"n": n, "t": time.monotonic(), "path": path, "body": body}
        status: int = 200
        payload: Any = None
        stream: list[dict[str, Any]] | None = None
        route = path.split("?")[0]
        if route.endswith("/responses") and isinstance(body, dict):
            steps, namespace = responses_steps(body)
            offered = sorted(t.get("name", "") for t in body.get("tools") or [])
            decision = (
                self.agent.decide(steps)
                if namespace
                else {"kind": "text", "text": f"the bridge's tools are not offered; tools: {offered}"}
            )
            record.update(api="responses", steps=steps, decision=decision)
            stream = responses_events(decision, namespace, n)
        elif ":countTokens" in route:
            payload = {"totalTokens": 10}
        elif ":generateContent" in route or ":streamGenerateContent" in route:
            if isinstance(body, dict) and gemini_offers(body, self.gemini_prefix):
                steps = gemini_steps(body, self.gemini_prefix)
                decision = self.agent.decide(steps)
                record.update(api="gemini", steps=steps, decision=decision)
            else:  # a side question (routing...): no bridge tools in it
                schema = ((body or {}).get("generationConfig") or {}).get("responseJsonSchema")
                text = json.dumps(_schema_value(schema)) if schema else "OK"
                decision = {"kind": "text", "text": text}
                record.update(api="gemini-side", decision=decision)
            answer = gemini_answer(decision, self.gemini_prefix)
            if ":streamGenerateContent" in route:
                stream = [answer]
            else:
                payload = answer
        else:
            status, payload = 404, {"error": {"message": f"scripted: no POST {path}"}}
        with self._lock:
            self.requests.append(record)
        return status, payload, stream

    @property
    def turns(self) -> list[dict[str, Any]]:
        """The requests that carried the bridge's tools (the serving agent's turns), in order."""
        with self._lock:
            return [r for r in self.requests if r.get("api") in ("responses", "gemini")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
