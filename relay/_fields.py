"""Reading a request body's JSON fields, with 400 errors that name the field (shared by the API adapters)."""

from __future__ import annotations

import json
import re
from typing import Any

from shared_protocol import MAX_TOKENS, STRICT_JSON, OutputFormat, ToolChoice, ToolSpec

from ._errors import RelayError, bad_request

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have, tool schemas included. Deeper bodies
are refused here, before a parser, a validator or the worker recurses through them."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_max_tokens(value: int, param: str) -> None:
    if not 0 < value <= MAX_TOKENS:
        raise bad_request(f"'{param}' must be a positive integer up to {MAX_TOKENS}.", param=param)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; a 400 for anything a later step would choke on (see :func:`parse_json`)."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise RelayError("invalid_json", "Request body must be a JSON object.")
    return data


def parse_json(text: str | bytes, where: str = "", depth: int = 0) -> Any:
    """JSON the relay decodes - the body, or a JSON string inside it (``where``, at ``depth`` levels of
    the body: tool-call arguments) - checked as one: a 400 naming the field for invalid JSON, nesting
    deeper than :data:`MAX_JSON_DEPTH` counted from the body's root, integers past Python's digit limit,
    lone surrogates, and numbers that are not finite (``NaN``, ``Infinity``, ``1e999``: JSON has none, and
    the worker refuses them)."""
    name = f"'{where}'" if where else "Request body"
    try:
        if isinstance(text, bytes):
            text = text.decode(json.detect_encoding(text), "surrogatepass")
        data = STRICT_JSON.decode(text)
    except RecursionError:
        raise _invalid(where, f"{name} nests deeper than {MAX_JSON_DEPTH} levels.") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and an integer of thousands of digits
        raise _invalid(where, f"{name} is not valid JSON: {exc}") from None
    _check_tree(data, depth + 1, ((), where) if where else ())
    return data


def _invalid(where: str, message: str) -> RelayError:
    return bad_request(message, param=where) if where else RelayError("invalid_json", message)


def _check_tree(data: Any, depth: int, trail: tuple[Any, ...]) -> None:
    """Depth and strings of a decoded tree, iteratively (the path is spelled out only for an error)."""
    Trail = tuple[Any, ...]  # (parent trail, key) chains
    stack: list[tuple[Any, int, Trail]] = [(data, depth, trail)]
    while stack:
        value, depth, trail = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_JSON_DEPTH:
                _refuse_depth(trail)
            for key, item in value.items():
                if _SURROGATE.search(key):
                    _refuse_surrogate((trail, key))
                stack.append((item, depth + 1, (trail, key)))
        elif isinstance(value, list):
            if depth > MAX_JSON_DEPTH:
                _refuse_depth(trail)
            stack.extend((item, depth + 1, (trail, i)) for i, item in enumerate(value))
        elif isinstance(value, str) and _SURROGATE.search(value):
            _refuse_surrogate(trail)


def _path(trail: tuple[Any, ...]) -> str:
    keys: list[Any] = []
    while trail:
        trail, key = trail
        keys.append(key)
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in reversed(keys)).lstrip(".") or "body"


def _refuse_depth(trail: tuple[Any, ...]) -> None:
    where = _path(trail)
    raise bad_request(f"'{where}' nests deeper than {MAX_JSON_DEPTH} levels of arrays and objects.", param=where)


def _refuse_surrogate(trail: tuple[Any, ...]) -> None:
    where = _path(trail)
    raise bad_request(f"'{where}' contains a lone UTF-16 surrogate: not valid Unicode text.", param=where)


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
