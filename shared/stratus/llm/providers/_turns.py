"""What the Anthropic Messages and Bedrock Converse translations share: both APIs want user and assistant
turns to alternate, both carry a tool's answer as a result block that names its call, and both count only
the uncached part of a prompt as its input tokens."""

from __future__ import annotations

from typing import Any

from stratus.llm import errors as e
from stratus.llm.catalog import Deployment
from stratus.llm.providers._classify import malformed
from stratus.llm.types import Message, Usage


def tool_result_id(message: Message, i: int) -> str:
    """The call a tool turn (messages[i]) answers: a tool result block cannot be placed without it."""
    if not message.tool_call_id:
        raise e.InvalidRequest(f"messages[{i}].tool_call_id is required for a tool turn",
                               field=f"messages[{i}].tool_call_id")
    return message.tool_call_id


def append_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Adds a turn, merged into the previous one when that has the same role (the APIs want alternation)."""
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] += blocks
    else:
        turns.append({"role": role, "content": blocks})


def cached_usage(data: Any, deployment: Deployment, *, input_key: str, output_key: str, read_key: str,
                 write_key: str) -> Usage:
    """Usage from counts whose input excludes the prompt-cache reads and writes; ours counts every prompt
    token (the four keys are the API's names for input, output, cache-read and cache-write tokens)."""
    if not isinstance(data, dict) or not isinstance(data.get(input_key), int):
        raise malformed(deployment.name, f"usage.{input_key} is missing")
    read = int(data.get(read_key) or 0)
    written = int(data.get(write_key) or 0)
    return Usage(input_tokens=data[input_key] + read + written, output_tokens=int(data.get(output_key) or 0),
                 cached_input_tokens=read)


def thinking(effort: str, max_tokens: int) -> dict[str, Any]:
    """OpenAI's reasoning_effort as Claude's extended-thinking config (stratus.llm.parameters.THINKING_BUDGETS):
    "none" disables thinking; a budget is cut below max_tokens and refused when that leaves under the minimum."""
    from stratus.llm.parameters import THINKING_BUDGETS, THINKING_MIN

    if effort == "none":
        return {"type": "disabled"}
    if effort not in THINKING_BUDGETS:
        raise e.InvalidRequest(f"reasoning_effort: {effort!r} is not one of none, {', '.join(THINKING_BUDGETS)}",
                               field="reasoning_effort")
    budget = min(THINKING_BUDGETS[effort], max_tokens - 1)
    if budget < THINKING_MIN:
        raise e.InvalidRequest(f"reasoning_effort: extended thinking needs a budget of at least {THINKING_MIN} "
                               f"tokens below max_tokens ({max_tokens}); raise max_completion_tokens",
                               field="reasoning_effort")
    return {"type": "enabled", "budget_tokens": budget}
