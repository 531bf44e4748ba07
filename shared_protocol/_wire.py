"""Reading decoded JSON into the protocol's types, checked by hand (the relay imports no validation
library: it starts faster and each frame costs a few dictionary lookups).

Every reader takes the object, the key and the path to the object, checks exactly what the type
declares, and raises :class:`Invalid` naming the path and the problem - never the value, which may be
prompt or answer text. ``null`` counts as absent only where the field is optional. Booleans are not
numbers; integers are accepted where a number is.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

T = TypeVar("T", bound=str)
_ABSENT: Any = object()


class Invalid(Exception):
    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)


def at(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def obj(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(where, "must be an object")
    return value


def only(d: dict[str, Any], fields: frozenset[str], where: str) -> None:
    """The neutral request is ours end to end: an unknown field there is a bug, not a newer peer."""
    unknown = d.keys() - fields
    if unknown:
        raise Invalid(at(where, min(unknown)), "is not a field of this object")


def _get(d: dict[str, Any], key: str, where: str, default: Any) -> Any:
    value = d.get(key, _ABSENT)
    if value is _ABSENT:
        if default is _ABSENT:
            raise Invalid(at(where, key), "is required")
        return default
    return value


def string(d: dict[str, Any], key: str, where: str) -> str:
    value = _get(d, key, where, _ABSENT)
    if not isinstance(value, str):
        raise Invalid(at(where, key), "must be a string")
    return value


def optional_string(d: dict[str, Any], key: str, where: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise Invalid(at(where, key), "must be a string or null")
    return value


def integer(d: dict[str, Any], key: str, where: str, *, default: Any = _ABSENT, low: int, high: int) -> int:
    value = _get(d, key, where, default)
    if type(value) is not int or not low <= value <= high:
        raise Invalid(at(where, key), f"must be an integer from {low} to {high}")
    return value


def optional_integer(d: dict[str, Any], key: str, where: str) -> int | None:
    value = d.get(key)
    if value is not None and type(value) is not int:
        raise Invalid(at(where, key), "must be an integer or null")
    return value


def number(d: dict[str, Any], key: str, where: str) -> float:
    value = _get(d, key, where, _ABSENT)
    if type(value) not in (int, float):
        raise Invalid(at(where, key), "must be a number")
    return float(value)


def optional_number(d: dict[str, Any], key: str, where: str) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if type(value) not in (int, float):
        raise Invalid(at(where, key), "must be a number or null")
    return float(value)


def boolean(d: dict[str, Any], key: str, where: str) -> bool:
    value = d.get(key, False)
    if type(value) is not bool:
        raise Invalid(at(where, key), "must be true or false")
    return value


def choice(d: dict[str, Any], key: str, where: str, choices: tuple[T, ...], default: Any = _ABSENT) -> T:
    value = _get(d, key, where, default)
    if value not in choices:
        raise Invalid(at(where, key), f"must be one of {', '.join(choices)}")
    return value  # type: ignore[no-any-return]


def array(d: dict[str, Any], key: str, where: str, *, required: bool = False) -> list[Any]:
    value = _get(d, key, where, _ABSENT if required else [])
    if not isinstance(value, list):
        raise Invalid(at(where, key), "must be an array")
    return value


def strings(d: dict[str, Any], key: str, where: str) -> list[str]:
    values = array(d, key, where)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise Invalid(at(at(where, key), i), "must be a string")
    return values


def json_object(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    return obj(_get(d, key, where, _ABSENT), at(where, key))


def optional_json_object(d: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = d.get(key)
    return None if value is None else obj(value, at(where, key))


def wire_json(wire: dict[str, Any]) -> str:
    """The one JSON spelling of the protocol: compact, UTF-8 as is (so a line of text stays its size)."""
    return json.dumps(wire, ensure_ascii=False, separators=(",", ":"))
