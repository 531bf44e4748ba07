"""Reading a request body's JSON fields, with 400 errors that name the field (shared by the API adapters)."""

from __future__ import annotations

import json
from typing import Any

from ._errors import bad_request


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(f"Request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("Request body must be a JSON object.", code="invalid_json")
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
