"""OpenAI ``/v1/responses``: the request's ``tools`` and ``tool_choice``, and how a call goes back.

Tools: ``function`` tools, and the function tools of a ``namespace`` (the Codex CLI groups its
sub-agent and MCP tools so), which the model sees as ``<namespace>__<name>`` (Codex's own flat form)
and whose calls go back as the bare ``name`` plus ``namespace``, the shape Codex dispatches (a
function_call input item carrying a ``namespace`` is read back the same way). Other tools
(web_search, file_search, code_interpreter...: hosted tools that only OpenAI's servers can run, and
kinds the relay cannot offer a model, such as freeform ``custom`` tools) are accepted and left out,
named in the ``x-mcptb-ignored-tools`` response header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared_protocol import ToolChoice, ToolSpec

from ._errors import bad_request
from ._fields import openai_tool_choice, tool_spec

NAMESPACE_DELIMITER = "__"


def flat_name(namespace: str, name: str) -> str:
    """The one name a namespaced tool has for the model: Codex's own flattening (``ToolName::
    canonical_flat_name``: ``multi_agent_v1`` + ``close_agent`` -> ``multi_agent_v1__close_agent``,
    stray underscores around the delimiter trimmed), the form OpenAI's models see too."""
    return namespace.rstrip("_") + NAMESPACE_DELIMITER + name.lstrip("_")


@dataclass(frozen=True)
class ToolSet:
    """A request's ``tools`` as read: what reaches the model, how calls go back, what was left out."""

    specs: tuple[ToolSpec, ...] = ()
    """Every function tool, a namespace's under its flat name."""
    namespaced: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """flat name -> (namespace, name), for the calls that go back to the caller."""
    ignored: tuple[str, ...] = ()
    """Tools no MCP client can run (hosted ones: web_search, file_search...), by name or else by type."""
    reported: tuple[dict[str, Any], ...] = ()
    """The ``tools`` a response reports: those the model got, in the caller's shape."""

    def call_fields(self, flat: str) -> dict[str, str]:
        """``name`` (and ``namespace``) of a function_call item: a namespaced tool's call carries its
        bare name and its namespace, as Codex expects (its flat name would be an unsupported call)."""
        if flat in self.namespaced:
            namespace, name = self.namespaced[flat]
            return {"name": name, "namespace": namespace}
        return {"name": flat}


def _function(tool: dict[str, Any], name: str, where: str) -> ToolSpec:
    return tool_spec(name, tool.get("description"), tool.get("parameters"), f"{where}.parameters", tool.get("strict"))


def reported_tool(spec: ToolSpec, name: str) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "description": spec.description,
        "parameters": spec.input_schema,
        "strict": spec.strict,
    }


def tool_set(raw: Any) -> ToolSet:
    """Function tools, and the function tools of a ``namespace`` (Codex groups its sub-agent and MCP
    tools so: ``{"type": "namespace", "name", "description", "tools": [...]}``), flattened. Anything
    else (web_search, file_search, code_interpreter, custom...) is accepted and left out, by name."""
    if raw is None:
        return ToolSet()
    if not isinstance(raw, list):
        raise bad_request("'tools' must be a list.", param="tools")
    specs: dict[str, ToolSpec] = {}
    namespaced: dict[str, tuple[str, str]] = {}
    ignored: list[str] = []
    reported: list[dict[str, Any]] = []

    def add(spec: ToolSpec, where: str) -> None:
        if spec.name in specs:
            raise bad_request(
                f"'{where}' is a second tool named {spec.name!r} (a namespace's tools are named "
                f"<namespace>{NAMESPACE_DELIMITER}<name>).",
                param=where,
            )
        specs[spec.name] = spec

    for i, tool in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise bad_request(f"'{where}' must be an object.", param=where)
        kind = tool.get("type")
        if kind == "function":
            if not isinstance(tool.get("name"), str):
                raise bad_request(f"'{where}.name' is required.", param=f"{where}.name")
            spec = _function(tool, tool["name"], where)
            add(spec, where)
            reported.append(reported_tool(spec, spec.name))
        elif kind == "namespace":
            namespace, members = tool.get("name"), tool.get("tools")
            if not isinstance(namespace, str) or not namespace:
                raise bad_request(f"'{where}.name' is required.", param=f"{where}.name")
            if not isinstance(members, list):
                raise bad_request(f"'{where}.tools' must be a list.", param=f"{where}.tools")
            group: list[dict[str, Any]] = []
            for j, member in enumerate(members):
                at = f"{where}.tools[{j}]"
                if not isinstance(member, dict):
                    raise bad_request(f"'{at}' must be an object.", param=at)
                if member.get("type") != "function":
                    label = member.get("name") if isinstance(member.get("name"), str) else member.get("type")
                    ignored.append(flat_name(namespace, str(label)))
                    continue
                if not isinstance(member.get("name"), str):
                    raise bad_request(f"'{at}.name' is required.", param=f"{at}.name")
                flat = flat_name(namespace, member["name"])
                spec = _function(member, flat, at)
                add(spec, at)
                namespaced[flat] = (namespace, member["name"])
                group.append(reported_tool(spec, member["name"]))
            if group:
                description = tool.get("description")
                reported.append({"type": "namespace", "name": namespace, "description": description, "tools": group})
        else:  # web_search, file_search...: only OpenAI's servers run them
            label = tool.get("name") if isinstance(tool.get("name"), str) else kind
            ignored.append(str(label))
    return ToolSet(tuple(specs.values()), namespaced, tuple(ignored), tuple(reported))


def tool_choice(raw: Any, tools: ToolSet) -> ToolChoice | None:
    """``tool_choice``; a function in a namespace (``{"type": "function", "name", "namespace"}``) by its flat name."""
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("namespace"), str):
        raw = {**raw, "name": flat_name(raw["namespace"], str(raw.get("name")))}
    return openai_tool_choice(raw, list(tools.specs))
