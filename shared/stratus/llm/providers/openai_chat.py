"""OpenAI Chat Completions through the official SDK (also any OpenAI-compatible endpoint via base_url).

The SDK's own retries are off: the router retries and falls back with the whole picture. Every SDK or
transport failure leaves this module as an llm.errors.ProviderError.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx2

from stratus.embeddings import get_embedder
from stratus.llm import errors as e
from stratus.llm.catalog import Deployment
from stratus.llm.providers._classify import classify_sdk_error, describe, for_status, malformed
from stratus.llm.providers._clients import SdkClients, attempt_timeout, relay_stream
from stratus.llm.types import (
    WIRE_CHOICE,
    WIRE_MESSAGE,
    WIRE_TOP,
    WIRE_USAGE,
    ChatRequest,
    Completion,
    FinishReason,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from stratus.openai_sdk import openai

log = logging.getLogger(__name__)
# The log event of a stream whose upstream ignored stream_options.include_usage (several
# OpenAI-compatible servers do): its usage is counted here instead (docs/providers.md, "Streams").
USAGE_COUNTED_EVENT = "stream_usage_counted"
# The tokenizer that counts such a stream: the offline model's, which ships with the stack (OpenAI's own
# vocabularies would add ~75 MB to the layer). Its 30k-word vocabulary counts more than o200k_base does
# (measured: +10% on English prose, +26% on Python, more on other scripts), so a counted stream is
# billed on the high side, never below what it used.
COUNTING_MODEL = "all-MiniLM-L6-v2-int8"

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                                    "function_call": "tool_calls", "content_filter": "content_filter"}


def build_params(request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
    """The Chat Completions arguments for a request. Roles and content parts (images included) pass through
    unchanged: our message model is OpenAI's. request.context is already rendered into the messages."""
    messages = []
    for m in request.messages:
        msg: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.name:
            msg["name"] = m.name
        if m.tool_calls:
            msg["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
        if m.tool_call_id:
            msg["tool_call_id"] = m.tool_call_id
        messages.append(msg)
    params: dict[str, Any] = {"model": deployment.model, "messages": messages}
    optional = {
        # max_completion_tokens replaces the deprecated max_tokens (reasoning models refuse the old name).
        "max_completion_tokens": request.max_tokens, "temperature": request.temperature, "top_p": request.top_p,
        "stop": request.stop, "seed": request.seed, "tools": request.tools, "tool_choice": request.tool_choice,
        "response_format": request.response_format, "user": request.user,
        "parallel_tool_calls": request.parallel_tool_calls, "reasoning_effort": request.reasoning_effort,
        "service_tier": request.service_tier, "safety_identifier": request.safety_identifier,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    if request.passthrough:  # the caller's other OpenAI parameters and extra_body names, as sent
        params.update({k: v for k, v in request.passthrough.items() if k not in params})
    return params


# The SDK's named arguments of chat.completions.create; any other name goes in extra_body, as the SDK expects.
_SDK_ARGUMENTS = frozenset(openai.types.chat.completion_create_params.CompletionCreateParamsBase.__annotations__) | {
    "stream"}


def sdk_arguments(params: dict[str, Any]) -> dict[str, Any]:
    """build_params' body as chat.completions.create's arguments (unknown names under extra_body)."""
    extra = {k: v for k, v in params.items() if k not in _SDK_ARGUMENTS}
    if not extra:
        return params
    return {k: v for k, v in params.items() if k in _SDK_ARGUMENTS} | {"extra_body": extra}


def _usage(data: Any, deployment: Deployment) -> Usage:
    if not isinstance(data, dict) or not isinstance(data.get("prompt_tokens"), int):
        raise malformed(deployment.name, "usage.prompt_tokens is missing")
    details = data.get("prompt_tokens_details") or {}
    return Usage(input_tokens=data["prompt_tokens"], output_tokens=int(data.get("completion_tokens") or 0),
                 cached_input_tokens=int(details.get("cached_tokens") or 0))


def parse_completion(data: Any, deployment: Deployment) -> Completion:
    """A chat.completion body -> Completion; a body without a choice, finish reason or usage is malformed."""
    if not isinstance(data, dict) or not data.get("choices") or not isinstance(data["choices"][0], dict):
        raise malformed(deployment.name, "no choices")
    choice = data["choices"][0]
    message = choice.get("message")
    if not isinstance(message, dict) or not choice.get("finish_reason"):
        raise malformed(deployment.name, "choices[0] lacks a message or finish_reason")
    try:
        calls = [ToolCall(id=c["id"], name=c["function"]["name"], arguments=c["function"].get("arguments") or "")
                 for c in message.get("tool_calls") or [] if c.get("type", "function") == "function"]
    except (KeyError, TypeError):
        raise malformed(deployment.name, "a tool call lacks id or function.name") from None
    return Completion(text=message.get("content") or "", tool_calls=calls,
                      finish_reason=_FINISH.get(choice["finish_reason"], "stop"),
                      usage=_usage(data.get("usage"), deployment), provider="openai",
                      model=str(data.get("model") or deployment.model), response_id=data.get("id"),
                      wire=wire_fields(data, choice, message))


def wire_fields(data: dict[str, Any], choice: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The response fields passed through unchanged (llm.types.WIRE_*), where the upstream sent them."""
    wire: dict[str, Any] = {k: data[k] for k in WIRE_TOP if k in data}
    usage = data.get("usage") or {}
    for key, source, names in (("usage", usage, WIRE_USAGE), ("choice", choice, WIRE_CHOICE),
                               ("message", message, WIRE_MESSAGE)):
        found = {k: source[k] for k in names if k in source}
        if found:
            wire[key] = found
    if len(data.get("choices") or ()) > 1:  # n > 1
        wire["choices"] = [c for c in data["choices"][1:] if isinstance(c, dict)]
    return wire


class StreamAssembler:
    """Folds chat.completion.chunk bodies into StreamChunks and knows whether the stream completed:
    a complete stream has a finish_reason. Its usage chunk (include_usage) gives the tokens; an upstream
    that sends none gets its tokens counted from the request and the streamed text."""

    def __init__(self, deployment: Deployment, request: ChatRequest | None = None) -> None:
        self.deployment = deployment
        self.request = request
        self.streamed: list[str] = []  # text and tool-call names/arguments, to count a usage-less stream
        self.finish: FinishReason | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.wire: dict[str, Any] = {}  # the top-level response fields (WIRE_TOP), from the first chunk
        self.wire_sent = False
        self.details: dict[str, Any] = {}  # the usage chunk's token details (WIRE_USAGE)

    def feed(self, data: dict[str, Any]) -> StreamChunk | None:
        self.model = self.model or data.get("model")
        if not self.wire_sent:
            self.wire.update({k: data[k] for k in WIRE_TOP if k in data and k not in self.wire})
        if data.get("usage"):
            self.usage = _usage(data["usage"], self.deployment)
            self.details = {k: data["usage"][k] for k in WIRE_USAGE if k in data["usage"]}
        choices = data.get("choices") or []
        if not choices:
            return None
        delta = choices[0].get("delta") or {}
        if choices[0].get("finish_reason"):
            self.finish = _FINISH.get(choices[0]["finish_reason"], "stop")
        calls = [ToolCallDelta(index=c.get("index", 0), id=c.get("id"), name=(c.get("function") or {}).get("name"),
                               arguments=(c.get("function") or {}).get("arguments") or "")
                 for c in delta.get("tool_calls") or []]
        text = delta.get("content") or ""
        if not (text or calls):
            return None
        self.streamed.append(text)
        self.streamed.extend(f"{c.name or ''}{c.arguments}" for c in calls)
        if self.wire_sent:
            return StreamChunk(text=text, tool_calls=calls)
        self.wire_sent = True
        return StreamChunk(text=text, tool_calls=calls, wire=self.wire)

    def final(self) -> StreamChunk:
        if self.finish is None:
            raise e.StreamInterrupted(f"{self.deployment.name}: stream ended before finish_reason",
                                      deployment=self.deployment.name)
        if self.usage is None:
            self.usage = self._counted_usage()
        wire = {"usage": self.details} if self.details else {}
        return StreamChunk(finish_reason=self.finish, usage=self.usage, model=self.model or self.deployment.model,
                           wire=wire)


    def _counted_usage(self) -> Usage:
        count = get_embedder(COUNTING_MODEL).count_tokens
        prompt = "\n".join(f"{m.role}: {m.text()}" for m in self.request.messages) if self.request else ""
        usage = Usage(input_tokens=count(prompt), output_tokens=count("".join(self.streamed)))
        log.warning("%s: deployment %s streamed no usage chunk; counted %d input and %d output tokens",
                    USAGE_COUNTED_EVENT, self.deployment.name, usage.input_tokens, usage.output_tokens)
        return usage


# No connection; or, mid-stream (timeouts included), a stream that broke.
_TRANSPORT = (openai.APIConnectionError, httpx2.TransportError)


def classify(err: Exception, deployment: Deployment) -> e.ProviderError:
    return classify_sdk_error(err, deployment.name, timeout=(openai.APITimeoutError,), connection=_TRANSPORT,
                              specific=_classify_sdk)


def _classify_sdk(err: Exception, name: str) -> e.ProviderError | None:
    if isinstance(err, openai.APIStatusError):
        return for_status(err.status_code, f"{name}: {describe(err.body, str(err))}", deployment=name,
                          headers=err.response.headers, context_length=err.code == "context_length_exceeded")
    if isinstance(err, openai.APIResponseValidationError):
        return malformed(name, str(err), err.status_code)
    if isinstance(err, openai.APIError):  # an error object sent inside a 200 stream
        body = err.body if isinstance(err.body, dict) else {}
        status = {"rate_limit_exceeded": 429, "context_length_exceeded": 400}.get(str(body.get("code")), 500)
        if body.get("type") == "invalid_request_error" and status == 500:
            status = 400
        return for_status(status, f"{name}: {describe(err.body, str(err))}", deployment=name,
                          context_length=status == 400 and body.get("code") == "context_length_exceeded")
    return None


_CAUGHT = (openai.OpenAIError, httpx2.HTTPError, ValueError)


class OpenAIProvider:
    name = "openai"

    def __init__(self) -> None:
        self._pool = SdkClients(openai.OpenAI, "STRATUS_OPENAI_API_KEY", openai.Timeout)
        self._clients = self._pool.by_key
        self._client = self._pool.get

    def complete(self, request: ChatRequest, deployment: Deployment, *, timeout: float) -> Completion:
        params = build_params(request, deployment)
        try:
            # The SDK's request path (auth, timeouts, typed errors) without its typed-parameter transform
            # and response models: we read the JSON ourselves, and those two cost about 0.6 ms a call.
            data = self._client(deployment).post("/chat/completions", body=params, cast_to=object,
                                                 options={"timeout": attempt_timeout(openai.Timeout, timeout)})
        except _CAUGHT as err:
            raise classify(err, deployment) from err
        return parse_completion(data, deployment)

    def stream(self, request: ChatRequest, deployment: Deployment, *, timeout: float) -> Iterator[StreamChunk]:
        params = build_params(request, deployment) | {"stream": True, "stream_options": {"include_usage": True}}
        try:
            events = self._client(deployment).chat.completions.create(
                **sdk_arguments(params), timeout=attempt_timeout(openai.Timeout, timeout))
        except _CAUGHT as err:
            raise classify(err, deployment) from err
        yield from relay_stream(events, StreamAssembler(deployment, request), deployment, broken=_TRANSPORT,
                                caught=_CAUGHT, classify=classify)
