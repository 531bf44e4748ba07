"""Structured output and schema-true tool calls: what the model is told, and the check of its answer.

Pure functions over ``jsonschema`` (which the ``mcp`` SDK brings), no I/O. Rules:
- A structured answer is exactly one JSON value. White space and one Markdown code fence around it
  (```` ```json ... ``` ````) are not errors and are stripped; any other text around it is an error.
- ``json_object`` wants a JSON object; ``json_schema`` a value valid against the schema, checked with
  the validator its ``$schema`` names (Draft 2020-12 when it names none). ``format`` is not asserted.
- A schema must itself be valid, and every ``$ref`` in it local (``#...``): nothing is ever fetched.
- Errors are listed as at most :data:`MAX_ERRORS` lines ``at <path>: <message>``, written for the
  model (or the agent) to correct its answer.
- Checking a schema and building its validator cost about a millisecond; both are cached by the
  schema's canonical JSON (:data:`CACHED_SCHEMAS` of them), since callers send the same schema again
  and again.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from jsonschema import exceptions, validators

from shared_protocol import OutputFormat

MAX_ERRORS = 10
CACHED_SCHEMAS = 64
_FENCE = re.compile(r"\A```[A-Za-z0-9_-]*[ \t]*\n(?P<body>.*?)\n?```\Z", re.S)


def schema_problem(schema: Any, where: str) -> str | None:
    """Why ``schema`` (found at ``where``) cannot be used, or None."""
    if not isinstance(schema, dict):
        return f"{where} must be a JSON Schema object"
    problem = _problem(_canonical(schema))
    return f"{where} {problem}" if problem else None


def _canonical(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=CACHED_SCHEMAS)
def _problem(canonical: str) -> str | None:
    schema = json.loads(canonical)
    remote = sorted(_remote_refs(schema))
    if remote:
        return f"refers to {', '.join(remote[:3])}: only local references ($ref starting with #) are supported"
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        return f"is not a valid JSON Schema: {exc.message} (at {_path(exc.absolute_path)})"
    return None


@functools.lru_cache(maxsize=CACHED_SCHEMAS)
def _validator(canonical: str) -> Any:
    schema = json.loads(canonical)
    return validators.validator_for(schema)(schema)


def _remote_refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str) and not value.startswith("#"):
                found.add(value)
            else:
                found |= _remote_refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _remote_refs(item)
    return found


def value_errors(value: Any, schema: dict[str, Any]) -> list[str]:
    """Where ``value`` breaks ``schema`` (empty when it is valid)."""
    errors = sorted(_validator(_canonical(schema)).iter_errors(value), key=lambda e: (list(e.absolute_path), e.message))
    lines = [f"at {_path(e.absolute_path)}: {e.message}" for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        lines.append(f"... and {len(errors) - MAX_ERRORS} more")
    return lines


def _path(path: Any) -> str:
    parts = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return "$" + parts


def parse_answer(text: str, wanted: OutputFormat) -> tuple[str, list[str]]:
    """The answer as compact JSON text, and what is wrong with it (empty when it is what was asked)."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group("body").strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return text, [f"the answer is not one JSON value ({exc.msg} at line {exc.lineno} column {exc.colno})"]
    if wanted.type == "json_object" and not isinstance(value, dict):
        return text, [f"the answer must be a JSON object, not {type(value).__name__}"]
    errors = value_errors(value, wanted.json_schema) if wanted.json_schema is not None else []
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")), errors


def instruction(wanted: OutputFormat) -> str:
    """What the model is told about the answer's format (added to the system prompt)."""
    if wanted.json_schema is None:
        return (
            "Answer with exactly one JSON object and nothing else: no prose before or after it, no Markdown code fence."
        )
    name = f' named "{wanted.name}"' if wanted.name else ""
    return (
        "Answer with exactly one JSON value and nothing else (no prose before or after it, no Markdown code "
        f"fence). It must be valid against this JSON Schema{name}:\n"
        + json.dumps(wanted.json_schema, ensure_ascii=False)
    )


def repair_request(errors: list[str]) -> str:
    """The user turn that asks the model to correct a structured answer."""
    return (
        "Your answer does not have the required format:\n- "
        + "\n- ".join(errors)
        + "\nAnswer again with only the corrected JSON value, nothing else."
    )


def arguments_problem(name: str, arguments: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """Why these arguments do not fit the tool's input schema, or None."""
    errors = value_errors(arguments, schema)
    if not errors:
        return None
    return f"the arguments of {name} do not match its schema:\n- " + "\n- ".join(errors)
