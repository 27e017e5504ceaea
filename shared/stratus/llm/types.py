"""What goes to a model and what comes back, independent of any provider's wire format.

Adapters (llm/providers/*) translate these to and from each provider's API; the router, the cache and
the generate function only ever see these types.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]
# Completion.wire's keys: top-level fields, then "usage", "choice" and "message" objects of fields to merge,
# and "choices": the choices after the first (n > 1), as the provider sent them.
WIRE_TOP = ("system_fingerprint", "service_tier")
WIRE_USAGE = ("completion_tokens_details", "prompt_tokens_details")
WIRE_CHOICE = ("logprobs",)
WIRE_MESSAGE = ("refusal", "annotations")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolCall(_Model):
    id: str
    name: str
    arguments: str  # JSON text, passed through as the model produced it


class Message(_Model):
    role: Role
    # A string, or OpenAI-style content parts ([{"type": "text", "text": ...}, ...]) passed through.
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant turns that called tools
    tool_call_id: str | None = None  # tool turns: which call this answers

    def text(self) -> str:
        """The message's text (text parts joined; other parts ignored)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class ContextPassage(_Model):
    """A retrieved chunk as given to the model; `number` is its [n] citation marker."""

    number: int
    chunk_id: int
    document_id: str
    document_version: int
    source_key: str
    title: str | None = None
    text: str
    score: float = 0.0


class ChatRequest(_Model):
    messages: Annotated[list[Message], Field(min_length=1)]
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None  # OpenAI function-tool schema, translated per provider
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    # Other OpenAI parameters and unknown names the caller set, under their OpenAI names: sent as is to
    # OpenAI-compatible upstreams (stratus.llm.parameters decides which providers may receive them).
    passthrough: dict[str, Any] | None = None
    # The passages the prompt was built from. Hosted providers see them only as rendered prompt text;
    # the offline provider answers from them directly.
    context: list[ContextPassage] | None = None


class Usage(_Model):
    input_tokens: int = 0  # all prompt tokens, cached ones included
    output_tokens: int = 0
    cached_input_tokens: int = 0  # the part of input_tokens served from the provider's prompt cache

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Completion(_Model):
    text: str
    tool_calls: list[ToolCall] = []
    finish_reason: FinishReason = "stop"
    usage: Usage
    provider: str  # "openai", "anthropic", "bedrock", "offline"
    model: str  # the model id the provider reported (or was asked for)
    response_id: str | None = None
    # Response fields an OpenAI-compatible upstream sent that Stratus passes through unchanged, in OpenAI's
    # shapes (WIRE_FIELDS): system_fingerprint, service_tier, usage details, the choice's logprobs, the
    # message's refusal and annotations.
    wire: dict[str, Any] = {}


class ToolCallDelta(_Model):
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""  # a fragment of the JSON arguments


class StreamChunk(_Model):
    """One piece of a streamed answer. The last chunk of a complete stream has `finish_reason` set
    and carries `usage`; a stream that ends without one was cut, and adapters raise StreamInterrupted."""

    text: str = ""
    tool_calls: list[ToolCallDelta] = []
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    model: str | None = None
    # As Completion.wire: the top-level fields on the first chunk that has them, the usage details on the last.
    wire: dict[str, Any] = {}
