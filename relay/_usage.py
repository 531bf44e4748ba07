"""Token counts. MCP sampling (and an agent's reply) report none, so the relay estimates them at
about four characters per token. Responses say so in the ``x-mcptb-usage: estimated`` header."""

from __future__ import annotations

from dataclasses import dataclass

from shared_protocol import NeutralRequest

USAGE_HEADER = ("x-mcptb-usage", "estimated")


@dataclass(frozen=True)
class UsageEstimate:
    input_tokens: int
    output_tokens: int


def _tokens(chars: int) -> int:
    return (chars + 3) // 4


def estimate(request: NeutralRequest, answer_chars: int) -> UsageEstimate:
    return UsageEstimate(_tokens(request.text_chars()), _tokens(answer_chars))
