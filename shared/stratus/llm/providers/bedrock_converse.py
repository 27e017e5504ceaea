"""Amazon Bedrock through boto3's Converse and ConverseStream.

Translation from our (OpenAI-shaped) messages: system/developer turns become `system` blocks, assistant
tool calls toolUse blocks, tool turns toolResult blocks in a user turn; consecutive turns of one role
are merged (Converse wants user and assistant to alternate). Images must arrive as data: URLs (Converse
takes bytes, not links). tool_choice "none" can only drop the tools when no earlier turn used one.
`reasoning_effort` becomes Claude's extended-thinking config in additionalModelRequestFields (Claude models
only). What Converse has no counterpart for (a caller's `seed`, `response_format`, `user`, ...) never
reaches this adapter: stratus.llm.parameters leaves the deployment out; a prompt version's own `seed` is
not sent.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import botocore.eventstream
import botocore.exceptions as bex
import botocore.parsers
import urllib3.exceptions

from stratus.aws.bedrock import runtime_client
from stratus.llm import errors as e
from stratus.llm.catalog import Deployment
from stratus.llm.providers._classify import classify_sdk_error, for_status, malformed, parse_arguments
from stratus.llm.providers._turns import append_turn, cached_usage, thinking, tool_result_id
from stratus.llm.types import ChatRequest, Completion, FinishReason, StreamChunk, ToolCall, ToolCallDelta, Usage

_FINISH: dict[str, FinishReason] = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
                                    "model_context_window_exceeded": "length", "tool_use": "tool_calls",
                                    "guardrail_intervened": "content_filter", "content_filtered": "content_filter"}
# Error codes (HTTP errors and stream exception events alike) -> the status that classifies them.
_CODE_STATUS = {"throttlingexception": 429, "servicequotaexceededexception": 429, "modelnotreadyexception": 429,
                "serviceunavailableexception": 503, "modeltimeoutexception": 408, "internalserverexception": 500,
                "modelerrorexception": 500, "modelstreamerrorexception": 500, "accessdeniedexception": 403,
                "unrecognizedclientexception": 403, "expiredtokenexception": 403,
                "validationexception": 400, "resourcenotfoundexception": 404}
# Bedrock reports an oversized prompt only as a ValidationException whose message says so.
_TOO_LONG = re.compile(r"too long|too many (input )?tokens|context (length|window)|input length|maximum context",
                       re.IGNORECASE)
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif",
                  "image/webp": "webp"}


def _content(content: str | list[dict[str, Any]] | None, field: str) -> list[dict[str, Any]]:
    if not content:
        return []  # Converse refuses empty text blocks
    if isinstance(content, str):
        return [{"text": content}]
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        where = f"{field}[{j}]"
        if part.get("type") == "text":
            if part.get("text"):
                blocks.append({"text": str(part["text"])})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url") or "")
            media_type, _, data = url[5:].partition(";base64,") if url.startswith("data:") else ("", "", "")
            if media_type not in _IMAGE_FORMATS or not data:
                raise e.InvalidRequest(f"{where}.image_url: Bedrock takes png/jpeg/gif/webp images as base64 data: "
                                       "URLs only", field=f"{where}.image_url")
            blocks.append({"image": {"format": _IMAGE_FORMATS[media_type],
                                     "source": {"bytes": base64.b64decode(data)}}})
        else:
            raise e.InvalidRequest(f"{where}.type: {part.get('type')!r} has no Bedrock equivalent",
                                   field=f"{where}.type")
    return blocks


def _tool_config(request: ChatRequest, history_uses_tools: bool) -> dict[str, Any] | None:
    if not request.tools or (request.tool_choice == "none" and not history_uses_tools):
        return None
    tools = []
    for i, tool in enumerate(request.tools):
        fn = tool.get("function") or {}
        if tool.get("type") != "function" or not fn.get("name"):
            raise e.InvalidRequest(f"tools[{i}]: only function tools with a name are supported", field=f"tools[{i}]")
        spec: dict[str, Any] = {"name": fn["name"],
                                "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}}}
        if fn.get("description"):
            spec["description"] = fn["description"]
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    choice = request.tool_choice
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise e.InvalidRequest("tool_choice.function.name is required", field="tool_choice")
        config["toolChoice"] = {"tool": {"name": name}}
    elif choice in ("auto", "required"):
        config["toolChoice"] = {"auto": {}} if choice == "auto" else {"any": {}}
    elif choice not in (None, "none"):
        raise e.InvalidRequest(f"tool_choice: {choice!r} is not auto, none or required", field="tool_choice")
    return config


def build_params(request: ChatRequest, deployment: Deployment) -> dict[str, Any]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    uses_tools = False
    for i, m in enumerate(request.messages):
        if m.role in ("system", "developer"):
            if m.text():
                system.append({"text": m.text()})
            continue
        blocks: list[dict[str, Any]]
        if m.role == "tool":
            result = {"toolUseId": tool_result_id(m, i), "content": [{"text": m.text()}]}
            role, blocks = "user", [{"toolResult": result}]
            uses_tools = True
        else:
            role, blocks = m.role, _content(m.content, f"messages[{i}].content")
            for j, call in enumerate(m.tool_calls or []):
                args = parse_arguments(call.arguments, field=f"messages[{i}].tool_calls[{j}].arguments")
                blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": args}})
                uses_tools = True
        append_turn(turns, role, blocks)
    params: dict[str, Any] = {"modelId": deployment.model, "messages": turns}
    if system:
        params["system"] = system
    max_tokens = request.max_tokens
    if request.reasoning_effort:  # Claude on Bedrock takes Anthropic's thinking config as is
        max_tokens = max_tokens or deployment.max_output_tokens
        params["additionalModelRequestFields"] = {"thinking": thinking(request.reasoning_effort, max_tokens)}
    inference = {"maxTokens": max_tokens, "temperature": request.temperature, "topP": request.top_p,
                 "stopSequences": request.stop}
    if any(v is not None for v in inference.values()):
        params["inferenceConfig"] = {k: v for k, v in inference.items() if v is not None}
    tool_config = _tool_config(request, uses_tools)
    if tool_config:
        params["toolConfig"] = tool_config
    return params


def _usage(data: Any, deployment: Deployment) -> Usage:
    return cached_usage(data, deployment, input_key="inputTokens", output_key="outputTokens",
                        read_key="cacheReadInputTokens", write_key="cacheWriteInputTokens")


def parse_response(data: Any, deployment: Deployment) -> Completion:
    message = ((data or {}).get("output") or {}).get("message") if isinstance(data, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list) or not data.get("stopReason"):
        raise malformed(deployment.name, "output.message.content and stopReason are required")
    text, calls = [], []
    for block in message["content"]:
        if "text" in block:
            text.append(str(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            calls.append(ToolCall(id=str(use.get("toolUseId")), name=str(use.get("name")),
                                  arguments=json.dumps(use.get("input") or {})))
    request_id = (data.get("ResponseMetadata") or {}).get("RequestId")
    return Completion(text="".join(text), tool_calls=calls, finish_reason=_FINISH.get(data["stopReason"], "stop"),
                      usage=_usage(data.get("usage"), deployment), provider="bedrock", model=deployment.model,
                      response_id=request_id)


class StreamAssembler:
    """Folds ConverseStream events into StreamChunks; complete once messageStop and metadata arrived."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.tool_index: dict[int, int] = {}
        self.finish: FinishReason | None = None
        self.usage: Usage | None = None

    def feed(self, event: dict[str, Any]) -> StreamChunk | None:
        if "contentBlockStart" in event:
            body = event["contentBlockStart"]
            use = (body.get("start") or {}).get("toolUse")
            if use:
                ordinal = self.tool_index.setdefault(int(body.get("contentBlockIndex", 0)), len(self.tool_index))
                return StreamChunk(tool_calls=[ToolCallDelta(index=ordinal, id=use.get("toolUseId"),
                                                             name=use.get("name"))])
        elif "contentBlockDelta" in event:
            body = event["contentBlockDelta"]
            delta = body.get("delta") or {}
            if "text" in delta:
                return StreamChunk(text=str(delta["text"]))
            if "toolUse" in delta:
                ordinal = self.tool_index.get(int(body.get("contentBlockIndex", 0)), 0)
                return StreamChunk(tool_calls=[ToolCallDelta(index=ordinal,
                                                             arguments=str(delta["toolUse"].get("input") or ""))])
        elif "messageStop" in event:
            self.finish = _FINISH.get(str(event["messageStop"].get("stopReason")), "stop")
        elif "metadata" in event:
            self.usage = _usage(event["metadata"].get("usage"), self.deployment)
        return None

    def final(self) -> StreamChunk:
        if self.finish is None or self.usage is None:
            missing = "messageStop" if self.finish is None else "metadata (usage)"
            raise e.StreamInterrupted(f"{self.deployment.name}: stream ended before {missing}",
                                      deployment=self.deployment.name)
        return StreamChunk(finish_reason=self.finish, usage=self.usage, model=self.deployment.model)


def classify(err: Exception, deployment: Deployment) -> e.ProviderError:
    return classify_sdk_error(err, deployment.name, timeout=(bex.ReadTimeoutError, bex.ConnectTimeoutError),
                              connection=(bex.HTTPClientError, bex.ConnectionError, urllib3.exceptions.HTTPError),
                              specific=_classify_sdk,
                              unparsable=(botocore.parsers.ResponseParserError, botocore.eventstream.ParserError,
                                          ValueError))


def _classify_sdk(err: Exception, name: str) -> e.ProviderError | None:
    if isinstance(err, bex.ClientError):  # EventStreamError (an exception event in a stream) is one too
        error = err.response.get("Error") or {}
        meta = err.response.get("ResponseMetadata") or {}
        code, message = str(error.get("Code") or ""), str(error.get("Message") or err)
        status = _CODE_STATUS.get(code.lower()) or int(meta.get("HTTPStatusCode") or 500)
        if code.lower() == "modeltimeoutexception":
            return e.ProviderTimeout(f"{name}: {code}: {message}", status=status, deployment=name)
        return for_status(status, f"{name}: {code}: {message}", deployment=name, headers=meta.get("HTTPHeaders"),
                          context_length=code.lower() == "validationexception" and bool(_TOO_LONG.search(message)))
    if isinstance(err, bex.NoCredentialsError | bex.PartialCredentialsError):
        return e.AuthenticationFailed(f"{name}: no AWS credentials: {err}", deployment=name)
    return None


_CAUGHT = (bex.BotoCoreError, bex.ClientError, botocore.eventstream.ParserError, botocore.parsers.ResponseParserError,
           urllib3.exceptions.HTTPError, ValueError)


class BedrockProvider:
    name = "bedrock"

    def _client(self, deployment: Deployment, timeout: float) -> Any:
        return runtime_client(region=deployment.region, endpoint_url=deployment.base_url, timeout=timeout)

    def complete(self, request: ChatRequest, deployment: Deployment, *, timeout: float) -> Completion:
        params = build_params(request, deployment)
        try:
            data = self._client(deployment, timeout).converse(**params)
        except _CAUGHT as err:
            raise classify(err, deployment) from err
        return parse_response(data, deployment)

    def stream(self, request: ChatRequest, deployment: Deployment, *, timeout: float) -> Iterator[StreamChunk]:
        params = build_params(request, deployment)
        try:
            events = self._client(deployment, timeout).converse_stream(**params)["stream"]
        except (KeyError, TypeError):
            raise malformed(deployment.name, "ConverseStream returned no stream") from None
        except _CAUGHT as err:
            raise classify(err, deployment) from err
        assembler = StreamAssembler(deployment)
        try:
            for event in events:
                chunk = assembler.feed(event)
                if chunk is not None:
                    yield chunk
        except bex.EventStreamError as err:  # an exception event: classified like the HTTP error
            raise classify(err, deployment) from err
        except (bex.HTTPClientError, urllib3.exceptions.HTTPError) as err:  # timeouts included: the stream broke
            raise e.StreamInterrupted(f"{deployment.name}: stream broke: {err}", deployment=deployment.name) from err
        except _CAUGHT as err:
            raise classify(err, deployment) from err
        finally:
            events.close()
        yield assembler.final()
