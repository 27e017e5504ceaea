"""Anthropic Messages through the official SDK.

Translation from our (OpenAI-shaped) messages: system/developer turns become the `system` parameter,
assistant tool calls become tool_use blocks, tool turns become tool_result blocks in a user turn, and
consecutive turns of one role are merged (the API wants user and assistant to alternate). A
`json_schema` response_format becomes output_config.format (structured outputs).

Translated (stratus.llm.parameters is the whole table): `stop` -> stop_sequences, `user` or
`safety_identifier` -> metadata.user_id, `parallel_tool_calls=false` -> tool_choice.disable_parallel_tool_use,
`reasoning_effort` -> an extended-thinking budget, `service_tier` auto/default -> auto/standard_only.
A caller's `seed`, `temperature`, `top_p` and the other parameters the table refuses never reach this
adapter (the deployment is left out); a prompt version's own `seed`, `temperature` and `top_p` are not sent:
the current Messages API and SDK no longer take sampling parameters. A `json_object` response format is
refused (there is no schema to give).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2

from stratus.llm import errors as e
from stratus.llm.catalog import Deployment
from stratus.llm.parameters import ANTHROPIC_SERVICE_TIERS
from stratus.llm.providers._classify import classify_sdk_error, describe, for_status, malformed, parse_arguments
from stratus.llm.providers._clients import SdkClients, attempt_timeout, relay_stream
from stratus.llm.providers._turns import append_turn, cached_usage, thinking, tool_result_id
from stratus.llm.types import ChatRequest, Completion, FinishReason, StreamChunk, ToolCall, ToolCallDelta, Usage

_FINISH: dict[str, FinishReason] = {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                                    "max_tokens": "length", "model_context_window_exceeded": "length",
                                    "tool_use": "tool_calls", "refusal": "content_filter"}
# An error type inside a 200 stream (the `error` event) -> the status the same error has over HTTP.
_TYPE_STATUS = {"overloaded_error": 529, "rate_limit_error": 429, "api_error": 500, "timeout_error": 504,
                "authentication_error": 401, "permission_error": 403, "not_found_error": 404,
                "request_too_large": 413, "invalid_request_error": 400}


def _image(part: dict[str, Any], field: str) -> dict[str, Any]:
    url = str((part.get("image_url") or {}).get("url") or "")
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise e.InvalidRequest(f"{field}: an image must be a data: URL or an http(s) URL", field=field)


def _blocks(content: str | list[dict[str, Any]] | None, field: str) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "image_url":
            blocks.append(_image(part, f"{field}[{j}]"))
        else:
            where = f"{field}[{j}].type"
            raise e.InvalidRequest(f"{where}: {kind!r} has no Anthropic equivalent", field=where)
    return blocks


def _parallel(out: dict[str, Any], request: ChatRequest) -> dict[str, Any]:
    """parallel_tool_calls=false: at most one tool call (tool_choice.disable_parallel_tool_use)."""
    if request.parallel_tool_calls is False and "tools" in out:
        choice = out.setdefault("tool_choice", {"type": "auto"})
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return out


def _tools(request: ChatRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if request.tools:
        tools = []
        for i, tool in enumerate(request.tools):
            fn = tool.get("function") or {}
            if tool.get("type") != "function" or not fn.get("name"):
                raise e.InvalidRequest(f"tools[{i}]: only function tools with a name are supported",
                                       field=f"tools[{i}]")
            spec = {"name": fn["name"], "input_schema": fn.get("parameters") or {"type": "object", "properties": {}}}
            if fn.get("description"):
                spec["description"] = fn["description"]
            tools.append(spec)
        out["tools"] = tools
    choice = request.tool_choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise e.InvalidRequest("tool_choice.function.name is required", field="tool_choice")
        out["tool_choice"] = {"type": "tool", "name": name}
    elif choice is not None:
        mapped = {"auto": "auto", "none": "none", "required": "any"}.get(choice)
        if mapped is None:
            raise e.InvalidRequest(f"tool_choice: {choice!r} is not auto, none or required", field="tool_choice")
        out["tool_choice"] = {"type": mapped}
    return out


def _output_config(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if not response_format or response_format.get("type") == "text":
        return None
    if response_format.get("type") != "json_schema":
        raise e.InvalidRequest(f"response_format: {response_format.get('type')!r} has no Anthropic counterpart; "
                               "send a json_schema", field="response_format")
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not isinstance(schema, dict):
        raise e.InvalidRequest("response_format.json_schema.schema: a JSON schema object is required",
                               field="response_format.json_schema.schema")
    return {"format": {"type": "json_schema", "schema": schema}}


def build_params(request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(request.messages):
        field = f"messages[{i}].content"
        if m.role in ("system", "developer"):
            system.append(m.text())
            continue
        blocks: list[dict[str, Any]]
        if m.role == "tool":
            role, blocks = "user", [{"type": "tool_result", "tool_use_id": tool_result_id(m, i), "content": m.text()}]
        else:
            role, blocks = m.role, _blocks(m.content, field)
            for j, call in enumerate(m.tool_calls or []):
                args = parse_arguments(call.arguments, field=f"messages[{i}].tool_calls[{j}].arguments")
                blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
        append_turn(turns, role, blocks)
    # Anthropic requires max_tokens; without one the deployment's output limit applies.
    params: dict[str, Any] = {"model": deployment.model, "messages": turns,
                              "max_tokens": request.max_tokens or deployment.max_output_tokens}
    if system:
        params["system"] = "\n\n".join(system)
    user = request.safety_identifier or request.user
    optional = {"stop_sequences": request.stop, "metadata": {"user_id": user} if user else None,
                "output_config": _output_config(request.response_format),
                "thinking": thinking(request.reasoning_effort, params["max_tokens"]) if request.reasoning_effort
                else None,
                "service_tier": _service_tier(request.service_tier)}
    params.update({k: v for k, v in optional.items() if v is not None})
    return params | _parallel(_tools(request), request)


def _service_tier(tier: str | None) -> str | None:
    if tier is None:
        return None
    if tier not in ANTHROPIC_SERVICE_TIERS:
        raise e.InvalidRequest(f"service_tier: {tier!r} has no Anthropic counterpart (auto, default)",
                               field="service_tier")
    return ANTHROPIC_SERVICE_TIERS[tier]


def _usage(data: Any, deployment: Deployment) -> Usage:
    return cached_usage(data, deployment, input_key="input_tokens", output_key="output_tokens",
                        read_key="cache_read_input_tokens", write_key="cache_creation_input_tokens")


def parse_message(data: Any, deployment: Deployment) -> Completion:
    if not isinstance(data, dict) or not isinstance(data.get("content"), list) or not data.get("stop_reason"):
        raise malformed(deployment.name, "a message needs content and stop_reason")
    text, calls = [], []
    for block in data["content"]:
        if block.get("type") == "text":
            text.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append(ToolCall(id=str(block.get("id")), name=str(block.get("name")),
                                  arguments=json.dumps(block.get("input") or {})))
    return Completion(text="".join(text), tool_calls=calls, finish_reason=_FINISH.get(data["stop_reason"], "stop"),
                      usage=_usage(data.get("usage"), deployment), provider="anthropic",
                      model=str(data.get("model") or deployment.model), response_id=data.get("id"))


class StreamAssembler:
    """Folds Messages stream events into StreamChunks; complete once message_stop has arrived."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.tool_index: dict[int, int] = {}  # content block index -> tool call ordinal
        self.usage: dict[str, Any] = {}
        self.finish: FinishReason | None = None
        self.model: str | None = None
        self.stopped = False

    def feed(self, data: dict[str, Any]) -> StreamChunk | None:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.model = message.get("model")
            self.usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                ordinal = self.tool_index.setdefault(int(data.get("index", 0)), len(self.tool_index))
                start = ToolCallDelta(index=ordinal, id=block.get("id"), name=block.get("name"))
                return StreamChunk(tool_calls=[start])
            if block.get("text"):
                return StreamChunk(text=block["text"])
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return StreamChunk(text=str(delta.get("text") or ""))
            if delta.get("type") == "input_json_delta":
                ordinal = self.tool_index.get(int(data.get("index", 0)), 0)
                return StreamChunk(tool_calls=[ToolCallDelta(index=ordinal, arguments=delta.get("partial_json") or "")])
        elif kind == "message_delta":
            stop = (data.get("delta") or {}).get("stop_reason")
            if stop:
                self.finish = _FINISH.get(stop, "stop")
            # message_delta carries cumulative counts; keep the start's input counts where it omits them.
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        elif kind == "message_stop":
            self.stopped = True
        return None

    def final(self) -> StreamChunk:
        if not self.stopped or self.finish is None:
            raise e.StreamInterrupted(f"{self.deployment.name}: stream ended before message_stop",
                                      deployment=self.deployment.name)
        return StreamChunk(finish_reason=self.finish, usage=_usage(self.usage, self.deployment),
                           model=self.model or self.deployment.model)


# No connection; or, mid-stream (timeouts included), a stream that broke.
_TRANSPORT = (anthropic.APIConnectionError, httpx2.TransportError)


def classify(err: Exception, deployment: Deployment) -> e.ProviderError:
    return classify_sdk_error(err, deployment.name, timeout=(anthropic.APITimeoutError,), connection=_TRANSPORT,
                              specific=_classify_sdk)


def _classify_sdk(err: Exception, name: str) -> e.ProviderError | None:
    if isinstance(err, anthropic.APIStatusError):
        status = err.status_code
        if status < 400:  # an `error` event inside a 200 stream: the status its type has over HTTP
            status = _TYPE_STATUS.get(str(err.type), 500)
        message = describe(err.body, str(err))
        # Anthropic signals an oversized prompt only in the message ("prompt is too long: N tokens > M maximum").
        too_long = status in (400, 413) and "prompt is too long" in message.lower()
        return for_status(status, f"{name}: {message}", deployment=name, headers=err.response.headers,
                          context_length=too_long)
    if isinstance(err, anthropic.APIResponseValidationError):
        return malformed(name, str(err), err.status_code)
    return None


_CAUGHT = (anthropic.AnthropicError, httpx2.HTTPError, ValueError)


class AnthropicProvider:
    name = "anthropic"

    def __init__(self) -> None:
        self._pool = SdkClients(anthropic.Anthropic, "STRATUS_ANTHROPIC_API_KEY", anthropic.Timeout)
        self._clients = self._pool.by_key
        self._client = self._pool.get

    def complete(self, request: ChatRequest, deployment: Deployment, *, timeout: float) -> Completion:
        params = build_params(request, deployment)
        try:
            message = self._client(deployment).messages.create(
                **params, timeout=attempt_timeout(anthropic.Timeout, timeout))
            data = message.to_dict(mode="json") if hasattr(message, "to_dict") else message
        except _CAUGHT as err:
            raise classify(err, deployment) from err
        return parse_message(data, deployment)

    def stream(self, request: ChatRequest, deployment: Deployment, *, timeout: float) -> Iterator[StreamChunk]:
        params = build_params(request, deployment) | {"stream": True}
        try:
            events = self._client(deployment).messages.create(
                **params, timeout=attempt_timeout(anthropic.Timeout, timeout))
        except _CAUGHT as err:
            raise classify(err, deployment) from err
        yield from relay_stream(events, StreamAssembler(deployment), deployment, broken=_TRANSPORT, caught=_CAUGHT,
                                classify=classify)
