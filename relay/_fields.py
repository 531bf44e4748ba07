"""Reading a request body's JSON fields, with 400 errors that name the field (shared by the API adapters)."""

from __future__ import annotations

import json
from typing import Any

from shared_protocol import OutputFormat, ToolChoice, ToolSpec

from ._errors import RelayError, bad_request


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RelayError("invalid_json", f"Request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RelayError("invalid_json", "Request body must be a JSON object.")
    return data


def opt(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if value is None:
        return None
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise bad_request(f"'{key}' must be {KIND_NAMES[kind]}.", param=key)
    return value


KIND_NAMES = {str: "a string", bool: "a boolean", int: "an integer", dict: "an object", list: "a list"}


def opt_number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_request(f"'{key}' must be a number.", param=key)
    return float(value)


def tool_spec(name: str, description: Any, schema: Any, param: str, strict: Any = False) -> ToolSpec:
    """A caller's tool; ``param`` names where its schema was (for the 400)."""
    schema = schema or {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise bad_request(f"'{param}' must be a JSON Schema object.", param=param)
    return ToolSpec(
        name=name,
        description=description if isinstance(description, str) else None,
        input_schema=schema,
        strict=strict is True,
    )


def output_format(kind: Any, schema: Any, name: Any, strict: Any, param: str) -> OutputFormat | None:
    """A structured-output request, from its parts as each API places them (``param`` names the
    object they came from). ``text`` means no format; json_schema needs a schema object."""
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return OutputFormat(type="json_object")
    if kind != "json_schema":
        raise bad_request(
            f"'{param}.type' must be text, json_object or json_schema; got {kind!r}.", param=f"{param}.type"
        )
    if not isinstance(schema, dict):
        raise bad_request(f"'{param}' needs a 'schema' object (a JSON Schema).", param=param)
    return OutputFormat(
        type="json_schema", name=name if isinstance(name, str) else None, json_schema=schema, strict=strict is True
    )


def forced_tool(name: Any, tools: list[ToolSpec], param: str) -> ToolChoice:
    """A tool_choice that demands one tool, which must be among the request's tools."""
    if not isinstance(name, str) or name not in {t.name for t in tools}:
        raise bad_request(f"'{param}' names a tool that is not in 'tools'.", param=param)
    return ToolChoice(mode="required", name=name)


def openai_tool_choice(raw: Any, tools: list[ToolSpec]) -> ToolChoice | None:
    """OpenAI's tool_choice; chat nests a function's name (``function.name``), Responses flattens it."""
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(mode=raw)
    if isinstance(raw, dict) and raw.get("type") == "function":
        function = raw.get("function")
        name = function.get("name") if isinstance(function, dict) else raw.get("name")
        return forced_tool(name, tools, "tool_choice")
    raise bad_request("'tool_choice' must be auto, none, required or a function.", param="tool_choice")
