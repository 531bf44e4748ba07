"""What the bench asks and what every answer is, in one place so the relay path and the bare server
serve exactly the same text.

Every answer in the bench is :data:`ANSWER`, 1,000 ASCII characters without quotes or backslashes,
so it appears verbatim inside the JSON and a client can check it with a byte search.
"""

from __future__ import annotations

import json

MODEL = "bench-model"
ANSWER = ("The quick brown fox jumps over the lazy dog. " * 23)[:1000]
PATH = "/v1/chat/completions"


SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 2000}},
    "required": ["answer"],
    "additionalProperties": False,
}
STRUCTURED_ANSWER = json.dumps({"answer": ANSWER}, separators=(",", ":"))
"""The structured case's answer: :data:`ANSWER` inside one JSON object (so the same byte search works)."""


def request_body(stream: bool, structured: bool = False) -> bytes:
    body: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if structured:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
    return json.dumps(body).encode()
