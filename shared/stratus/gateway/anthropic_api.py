"""The Anthropic Messages API at the edge: POST /v1/messages, so the official `anthropic` SDK works against
Stratus unchanged. A Messages request is translated into the chat completion request it means and
answered by the same pipeline (routing, limits, budgets, cache, rails, traces); the answer is translated
back: a `message` object, or Messages stream events. Errors keep their status and take Anthropic's
shape (`{"type": "error", "error": {"type", "message"}}`), so the SDK raises the same classes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Iterable
from contextlib import closing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratus.gateway import errors
from stratus.gateway.openai_models import ModelId, StratusOptions
from stratus.validation import INT4_MAX

PATH = "/v1/messages"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextBlock(_Body):
    type: Literal["text"]
    text: str
    cache_control: dict[str, Any] | None = None  # prompt caching hints: accepted, not forwarded
    citations: list[dict[str, Any]] | None = None


class ImageSource(_Body):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ImageBlock(_Body):
    type: Literal["image"]
    source: ImageSource
    cache_control: dict[str, Any] | None = None


class ToolUseBlock(_Body):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None


class ToolResultBlock(_Body):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] = ""
    is_error: bool | None = None
    cache_control: dict[str, Any] | None = None


Block = Annotated[TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


class MessageIn(_Body):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class ToolIn(_Body):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    cache_control: dict[str, Any] | None = None


class ToolChoice(_Body):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(_Body):
    user_id: Annotated[str, Field(max_length=256)] | None = None


class OutputFormat(_Body):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Body):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: OutputFormat | None = None


class Thinking(_Body):
    type: Literal["disabled"]  # extended thinking has no chat completion equivalent: refused by name


class MessagesRequest(_Body):
    model: ModelId
    max_tokens: int = Field(ge=1, le=INT4_MAX)
    messages: Annotated[list[MessageIn], Field(min_length=1)]
    system: str | list[TextBlock] | None = None
    stop_sequences: Annotated[list[str], Field(max_length=4)] | None = None
    # Sampling parameters older clients send (the current SDK no longer has them).
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    tools: Annotated[list[ToolIn], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None
    thinking: Thinking | None = None
    cache_control: dict[str, Any] | None = None  # a prompt caching hint: accepted, not forwarded
    stream: bool = False
    stratus: StratusOptions = StratusOptions()

    def as_chat(self) -> dict[str, Any]:
        """The chat completion request body this Messages request means."""
        messages: list[dict[str, Any]] = []
        if self.system:
            system = self.system if isinstance(self.system, str) else "\n\n".join(b.text for b in self.system)
            messages.append({"role": "system", "content": system})
        for i, m in enumerate(self.messages):
            messages.extend(_chat_messages(m, i))
        body: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": self.max_tokens,
                                "stream": self.stream, "stratus": self.stratus.model_dump(exclude_unset=True)}
        if self.stream:
            body["stream_options"] = {"include_usage": True}  # message_delta carries the usage
        optional = {"stop": self.stop_sequences, "temperature": self.temperature, "top_p": self.top_p,
                    "top_k": self.top_k, "user": self.metadata.user_id if self.metadata else None}
        body.update({k: v for k, v in optional.items() if v is not None})
        if self.tools:
            body["tools"] = [{"type": "function", "function": {
                "name": t.name, "parameters": t.input_schema,
                **({"description": t.description} if t.description else {})}} for t in self.tools]
        if self.tool_choice is not None:
            body.update(_tool_choice(self.tool_choice))
        if self.output_config and self.output_config.effort:
            body["reasoning_effort"] = self.output_config.effort
        if self.output_config and self.output_config.format:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "output", "schema": self.output_config.format.schema_}}
        return body


def _chat_messages(m: MessageIn, i: int) -> list[dict[str, Any]]:
    """One Messages turn as chat messages: tool results become `tool` messages (first, as they answer the
    previous turn's calls); an assistant's tool_use blocks become its tool_calls."""
    if isinstance(m.content, str):
        return [{"role": m.role, "content": m.content}]
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(m.content):
        where = f"messages.{i}.content.{j}"
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            if m.role != "user":
                raise errors.invalid_request(f"{where}: images are allowed in user turns only", param=where)
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block.source, where)}})
        elif isinstance(block, ToolUseBlock):
            if m.role != "assistant":
                raise errors.invalid_request(f"{where}: tool_use blocks belong to assistant turns", param=where)
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": json.dumps(block.input)}})
        else:
            if m.role != "user":
                raise errors.invalid_request(f"{where}: tool_result blocks belong to user turns", param=where)
            content = block.content if isinstance(block.content, str) else "".join(
                b.text for b in block.content if isinstance(b, TextBlock))
            results.append({"role": "tool", "tool_call_id": block.tool_use_id,
                            "content": f"Error: {content}" if block.is_error else content})
    out = list(results)
    if m.role == "assistant":
        text = "".join(p["text"] for p in parts)
        if text or calls:
            out.append({"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})})
    elif parts:
        out.append({"role": "user", "content": parts})
    return out


def _image_url(source: ImageSource, where: str) -> str:
    if source.type == "url":
        if not source.url:
            raise errors.invalid_request(f"{where}.source.url: required for a url image", param=f"{where}.source.url")
        return source.url
    if not (source.data and source.media_type):
        raise errors.invalid_request(f"{where}.source: a base64 image needs media_type and data",
                                     param=f"{where}.source")
    return f"data:{source.media_type};base64,{source.data}"


def _tool_choice(choice: ToolChoice) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if choice.type == "tool":
        if not choice.name:
            raise errors.invalid_request("tool_choice.name: required when type is tool", param="tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    if choice.disable_parallel_tool_use:
        out["parallel_tool_calls"] = False
    return out


# --- answers ----------------------------------------------------------------------------------------
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def usage(openai_usage: dict[str, Any] | None) -> dict[str, Any]:
    """Anthropic counts cached prompt tokens apart from input_tokens; OpenAI includes them."""
    u = openai_usage or {}
    cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {"input_tokens": int(u.get("prompt_tokens") or 0) - cached, "output_tokens": int(u.get("completion_tokens")
            or 0), "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}


def message_object(completion: dict[str, Any]) -> dict[str, Any]:
    """A chat.completion as a Messages `message`; `citations` and `stratus` ride along under their keys."""
    choice = completion["choices"][0]
    msg = choice["message"]
    content: list[dict[str, Any]] = []
    if msg.get("content"):
        content.append({"type": "text", "text": msg["content"]})
    for call in msg.get("tool_calls") or ():
        content.append({"type": "tool_use", "id": call["id"], "name": call["function"]["name"],
                        "input": _arguments(call["function"]["arguments"])})
    return {"id": message_id(), "type": "message", "role": "assistant", "model": completion["model"],
            "content": content, "stop_reason": STOP_REASONS.get(choice["finish_reason"], "end_turn"),
            "stop_sequence": None, "usage": usage(completion.get("usage")),
            "citations": completion.get("citations", []), "stratus": completion.get("stratus")}


def _arguments(text: str) -> dict[str, Any]:
    """A tool call's input; a model that wrote arguments that are not a JSON object gets them kept whole."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"_raw_arguments": text}
    return value if isinstance(value, dict) else {"_raw_arguments": text}


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    """Every error body of /v1/messages (Anthropic's shape)."""

    type: Literal["error"]
    error: AnthropicErrorDetail
    request_id: str | None


def error_body(err: errors.APIError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ERROR_TYPES.get(err.status, "api_error"), "message": err.message},
            "request_id": None}


_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                403: "permission_error", 404: "not_found_error", 408: "timeout_error", 413: "request_too_large",
                429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error"}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: ".encode() + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() \
        + b"\n\n"


def stream_events(chat_events: Iterable[bytes]) -> Generator[bytes, None, None]:
    """The Messages stream events for the chat completion chunks of one answer (`data: {...}` frames as
    stratus.gateway.sse writes them). An error frame becomes an `error` event, and the stream ends there."""
    block: str | None = None  # the open content block: "text" or a tool call's id
    index = -1
    stop: str | None = None
    extra: dict[str, Any] = {}
    from stratus.gateway.sse import chunks as chat_chunks  # the stream's module: not at the app's import

    with closing(chat_chunks(chat_events)) as chunks:
        for data in chunks:
            if "error" in data:
                yield _event("error", error_body(errors.APIError(_status_of(data["error"]), data["error"]["message"])))
                return
            if not data.get("choices"):  # the usage chunk: the last one
                u = usage(data.get("usage"))
                if block is not None:
                    yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
                yield _event("message_delta", {"type": "message_delta", "delta": {
                    "stop_reason": stop or "end_turn", "stop_sequence": None}, "usage": u, **extra})
                yield _event("message_stop", {"type": "message_stop"})
                return
            choice = data["choices"][0]
            delta = choice.get("delta") or {}
            if delta.get("role"):
                yield _event("message_start", {"type": "message_start", "message": {
                    "id": message_id(), "type": "message", "role": "assistant", "model": data["model"],
                    "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage(None)}})
            if delta.get("content"):
                if block != "text":
                    if block is not None:
                        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
                    block, index = "text", index + 1
                    yield _event("content_block_start", {"type": "content_block_start", "index": index,
                                                         "content_block": {"type": "text", "text": ""}})
                yield _event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                     "delta": {"type": "text_delta", "text": delta["content"]}})
            for call in delta.get("tool_calls") or ():
                if call.get("id") and call["id"] != block:
                    if block is not None:
                        yield _event("content_block_stop", {"type": "content_block_stop", "index": index})
                    block, index = call["id"], index + 1
                    yield _event("content_block_start", {"type": "content_block_start", "index": index,
                                                         "content_block": {"type": "tool_use", "id": call["id"],
                                                                           "name": call["function"]["name"],
                                                                           "input": {}}})
                if call["function"].get("arguments"):
                    yield _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                        "type": "input_json_delta", "partial_json": call["function"]["arguments"]}})
            if choice.get("finish_reason"):
                stop = STOP_REASONS.get(choice["finish_reason"], "end_turn")
                extra = {k: data[k] for k in ("citations", "stratus") if k in data}


def _status_of(error: dict[str, Any]) -> int:
    """The status an error frame's error would have had as a response (the frame carries no status)."""
    if error.get("code") == "timeout":
        return 504
    return {"invalid_request_error": 400, "rate_limit_error": 429}.get(str(error.get("type")), 500)
