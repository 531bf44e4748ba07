"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models the connected MCP clients serve, in one
object shape that OpenAI's and Anthropic's clients both read.

Rules worth knowing:
- One entry per model id a worker offers (the first worker that offers it). OpenAI's fields (``id``,
  ``object``, ``created``, ``owned_by``) and Anthropic's (``type``, ``display_name``, ``created_at``,
  ``lifecycle``) side by side, plus ``description``: Claude Code's model discovery shows
  ``display_name`` and ``description`` in its picker (LLM gateway protocol).
- The list says ``has_more: false`` with ``first_id``/``last_id``: every model fits one page, and the
  Anthropic SDK, which pages on ``last_id`` unless ``has_more`` is false, stops.
- Limits (``context_length``...) appear only when the worker reports them (``WorkerInfo.limits``):
  never guessed.
"""

from __future__ import annotations

import time
from typing import Any

from ._jobs import Snapshot, WorkerView

MODEL_PREFIX = "/v1/models/"


def model_list(snapshot: Snapshot) -> dict[str, Any]:
    data = [model_object(model, worker) for model, worker in snapshot.models()]
    return {
        "object": "list",
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def find_model(snapshot: Snapshot, model_id: str) -> dict[str, Any] | None:
    return next((model_object(m, w) for m, w in snapshot.models() if m == model_id), None)


def model_object(model: str, worker: WorkerView) -> dict[str, Any]:
    info = worker.info
    client = " ".join(filter(None, (info.client_name, info.client_version))) or "an MCP client"
    how = " and ".join("MCP sampling" if mode == "sampling" else "its agent" for mode in info.modes) or "MCP"
    entry: dict[str, Any] = {
        "id": model,
        "object": "model",
        "type": "model",
        "created": int(worker.connected_at),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(worker.connected_at)),
        "owned_by": info.client_name or "mcp-client",
        "display_name": f"{model} ({client})",
        "description": f"Served through MCP Token Bridge by {client}, by {how}.",
        "lifecycle": "active",
    }
    limits = info.limits.get(model)
    if limits is not None:
        if limits.context_length is not None:
            entry |= {"context_length": limits.context_length, "max_input_tokens": limits.context_length}
        if limits.max_output_tokens is not None:
            tokens = limits.max_output_tokens
            entry |= {"max_completion_tokens": tokens, "max_output_tokens": tokens, "max_tokens": tokens}
    return entry
