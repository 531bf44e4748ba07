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


def request_body(stream: bool) -> bytes:
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}).encode()
