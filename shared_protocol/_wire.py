"""Reading decoded JSON into the protocol's types, checked by hand (the relay imports no validation
library: it starts faster and each frame costs a few dictionary lookups).

Every reader takes an object and a key and checks exactly what the type declares. A wrong field
raises :class:`Invalid`, which names where it is (each container it passes through on its way out
adds its key, so the happy path builds no paths) and what is wrong - never the value, which may be
prompt or answer text. ``null`` counts as absent only where the field is optional. Booleans are not
numbers; integers are accepted where a number is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
S = TypeVar("S", bound=str)
_ABSENT: Any = object()
MAX_DEPTH = 64
"""Deepest nesting of arrays and objects in a free-form JSON object of a frame (tool arguments and
schemas): the relay refuses deeper request bodies with the same limit."""


class Invalid(Exception):
    def __init__(self, key: str | int | None, problem: str) -> None:
        super().__init__(problem)
        self.path: list[str | int] = [] if key is None else [key]
        self.problem = problem

    def within(self, key: str | int) -> Invalid:
        self.path.insert(0, key)
        return self

    def __str__(self) -> str:
        where = "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in self.path).lstrip(".")
        return f"{where}: {self.problem}" if where else self.problem


def obj(value: object) -> dict[str, Any]:
    if type(value) is not dict:
        raise Invalid(None, "must be an object")
    return value


def inner(d: dict[str, Any], key: str, read: Callable[[object], T]) -> T:
    """``read`` applied to the value at ``key`` (an error in it is placed under ``key``)."""
    try:
        return read(d.get(key))
    except Invalid as exc:
        raise exc.within(key) from None


def each(d: dict[str, Any], key: str, read: Callable[[object], T], *, required: bool = False) -> list[T]:
    """``read`` applied to every item of the array at ``key`` (absent: empty, unless ``required``)."""
    values = array(d, key, required=required)
    read_all = []
    for i, value in enumerate(values):
        try:
            read_all.append(read(value))
        except Invalid as exc:
            raise exc.within(i).within(key) from None
    return read_all


def only(d: dict[str, Any], fields: frozenset[str]) -> None:
    """The neutral request is ours end to end: an unknown field there is a bug, not a newer peer."""
    if not fields.issuperset(d):
        raise Invalid(min(d.keys() - fields), "is not a field of this object")


def string(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if type(value) is not str:
        raise Invalid(key, "must be a string" if key in d else "is required")
    return value


def optional_string(d: dict[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is not None and type(value) is not str:
        raise Invalid(key, "must be a string or null")
    return value


def integer(d: dict[str, Any], key: str, *, default: Any = _ABSENT, low: int, high: int) -> int:
    value = d.get(key, default)
    if type(value) is not int or not low <= value <= high:
        problem = "is required" if value is _ABSENT else f"must be an integer from {low} to {high}"
        raise Invalid(key, problem)
    return value


MAX_COUNT = 2**53
"""The most a count of characters or tokens in a frame may be (exact in a double)."""


def count(d: dict[str, Any], key: str) -> int:
    """A count of characters or tokens: an integer from 0 to :data:`MAX_COUNT`."""
    return integer(d, key, low=0, high=MAX_COUNT)


def optional_count(d: dict[str, Any], key: str) -> int | None:
    return None if d.get(key) is None else count(d, key)


def without_none(wire: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in wire.items() if value is not None}


def optional_integer(d: dict[str, Any], key: str) -> int | None:
    value = d.get(key)
    if value is not None and type(value) is not int:
        raise Invalid(key, "must be an integer or null")
    return value


def number(d: dict[str, Any], key: str) -> float:
    value: Any = d.get(key)
    if type(value) not in (int, float):
        raise Invalid(key, "must be a number" if key in d else "is required")
    return float(value)


def optional_number(d: dict[str, Any], key: str) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if type(value) not in (int, float):
        raise Invalid(key, "must be a number or null")
    return float(value)


def boolean(d: dict[str, Any], key: str) -> bool:
    value = d.get(key, False)
    if type(value) is not bool:
        raise Invalid(key, "must be true or false")
    return value


def choice(d: dict[str, Any], key: str, choices: tuple[S, ...], default: Any = _ABSENT) -> S:
    value = d.get(key, default)
    if value not in choices:
        raise Invalid(key, f"must be one of {', '.join(choices)}")
    return value  # type: ignore[no-any-return]


def array(d: dict[str, Any], key: str, *, required: bool = False) -> list[Any]:
    value = d.get(key, _ABSENT)
    if type(value) is not list:
        if value is _ABSENT and not required:
            return []
        raise Invalid(key, "must be an array" if value is not _ABSENT else "is required")
    return value


def strings(d: dict[str, Any], key: str) -> list[str]:
    values = array(d, key)
    for i, value in enumerate(values):
        if type(value) is not str:
            raise Invalid(i, "must be a string").within(key)
    return values


def json_object(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key)
    if type(value) is not dict:
        raise Invalid(key, "must be an object" if key in d else "is required")
    return _shallow(value, key)


def optional_json_object(d: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = d.get(key)
    if value is not None and type(value) is not dict:
        raise Invalid(key, "must be an object or null")
    return value if value is None else _shallow(value, key)


def _shallow(value: dict[str, Any], key: str) -> dict[str, Any]:
    """A JSON object nested at most :data:`MAX_DEPTH` levels (deeper ones would make whoever encodes or
    walks it again recurse past Python's limit), checked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else ()
        for child in children:
            if type(child) in (dict, list):
                if depth >= MAX_DEPTH:
                    raise Invalid(key, f"nests deeper than {MAX_DEPTH} levels")
                stack.append((child, depth + 1))
    return value


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def _not_a_number(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


STRICT_JSON = json.JSONDecoder(parse_float=_finite, parse_constant=_not_a_number)
"""The one decoder for JSON from outside (request bodies, protocol lines): numbers JSON has not -
``NaN``, ``Infinity``, ``1e999`` - are a ``ValueError``, so nothing decoded can fail to encode again.
One instance for every call (``json.loads`` with an option builds a new decoder per call)."""


def wire_json(value: Any) -> str:
    """The one JSON spelling of the protocol: compact, UTF-8 as is (so a line of text stays its size)."""
    return _ENCODER.encode(value)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
"""One encoder for every line (``json.dumps`` with options builds a new one per call)."""
