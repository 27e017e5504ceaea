"""OpenAI's Responses API at the edge: POST /v1/responses (and GET/DELETE of a stored response), so
`client.responses` works against Stratus. A request is translated into the chat completion it means (the
stored conversation of `previous_response_id` first) and answered by the same pipeline; the answer is
translated back into a `response` object (here), or the Responses stream events (responses_stream). With
`store` (the default) the conversation through the response is kept per tenant (stratus.db.stored_responses)
for the next turn.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

from stratus.gateway import errors
from stratus.gateway.openai_models import ModelId, StratusOptions
from stratus.validation import INT4_MAX

RESPONSE_ID_PATTERN = r"^resp_[A-Za-z0-9]{1,64}$"
ResponseId = Annotated[str, StringConstraints(pattern=RESPONSE_ID_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputText(_Body):
    type: Literal["input_text", "output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class InputImage(_Body):
    type: Literal["input_image"]
    image_url: str
    detail: Literal["low", "high", "auto", "original"] | None = None


class Refusal(_Body):
    type: Literal["refusal"]
    refusal: str


Part = Annotated[InputText | InputImage | Refusal, Field(discriminator="type")]


class MessageItem(_Body):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Part]
    id: str | None = None  # an output message passed back as input
    status: str | None = None
    phase: str | None = None


class FunctionCallItem(_Body):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(_Body):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputText]
    id: str | None = None
    status: str | None = None


def _item_type(value: Any) -> str:
    found = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")
    return str(found)


Item = Annotated[Annotated[MessageItem, Tag("message")] | Annotated[FunctionCallItem, Tag("function_call")]
                 | Annotated[FunctionCallOutputItem, Tag("function_call_output")], Discriminator(_item_type)]


class FunctionTool(_Body):
    type: Literal["function"]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(_Body):
    type: Literal["function"]
    name: str


class TextFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextOptions(_Body):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class Reasoning(_Body):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: None = None  # reasoning summaries have no chat completion equivalent


# What `include` may name. Stratus's answers hold messages and function calls only, so the items the others
# extend (hosted tool calls, reasoning, input images echoed back) never appear: asking is harmless. Logprobs
# are the one include with content here: they are asked of the provider (`logprobs` on the chat request).
Includable = Literal["message.output_text.logprobs", "reasoning.encrypted_content", "file_search_call.results",
                     "web_search_call.results", "web_search_call.action.sources", "message.input_image.image_url",
                     "computer_call_output.output.image_url", "code_interpreter_call.outputs"]


class ResponsesRequest(_Body):
    model: ModelId
    input: str | Annotated[list[Item], Field(min_length=1)]
    instructions: str | None = None
    previous_response_id: ResponseId | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=INT4_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    tools: Annotated[list[FunctionTool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    include: Annotated[list[Includable], Field(max_length=16)] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    reasoning: Reasoning | None = None
    metadata: dict[str, Annotated[str, StringConstraints(max_length=512)]] | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    safety_identifier: Annotated[str, StringConstraints(max_length=256)] | None = None
    # The chat parameters of the same names (the parameter table says which providers honour them).
    service_tier: Annotated[str, StringConstraints(max_length=32)] | None = None
    prompt_cache_key: Annotated[str, StringConstraints(max_length=1024)] | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    store: bool = True
    stream: bool = False
    truncation: Literal["disabled"] | None = None
    stratus: StratusOptions = StratusOptions()

    def input_messages(self) -> list[dict[str, Any]]:
        """The input items as chat messages (function calls join the assistant turn before them)."""
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        out: list[dict[str, Any]] = []
        for i, item in enumerate(self.input):
            if isinstance(item, MessageItem):
                out.append({"role": item.role, "content": _content(item, f"input.{i}")})
            elif isinstance(item, FunctionCallItem):
                call = {"id": item.call_id, "type": "function",
                        "function": {"name": item.name, "arguments": item.arguments}}
                if out and out[-1]["role"] == "assistant":
                    out[-1].setdefault("tool_calls", []).append(call)
                else:
                    out.append({"role": "assistant", "content": None, "tool_calls": [call]})
            else:
                output = item.output if isinstance(item.output, str) else "".join(p.text for p in item.output)
                out.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
        return out

    def as_chat(self, conversation: list[dict[str, Any]]) -> dict[str, Any]:
        """The chat completion request body: instructions, then `conversation` (the stored one and this
        request's input_messages)."""
        messages = ([{"role": "system", "content": self.instructions}] if self.instructions else []) + conversation
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": self.stream,
                                "stratus": self.stratus.model_dump(exclude_unset=True)}
        if self.stream:
            body["stream_options"] = {"include_usage": True}  # response.completed carries the usage
        optional = {"max_completion_tokens": self.max_output_tokens, "temperature": self.temperature,
                    "top_p": self.top_p, "parallel_tool_calls": self.parallel_tool_calls, "user": self.user,
                    "safety_identifier": self.safety_identifier,
                    "reasoning_effort": self.reasoning.effort if self.reasoning else None,
                    "top_logprobs": self.top_logprobs, "service_tier": self.service_tier,
                    "prompt_cache_key": self.prompt_cache_key, "prompt_cache_retention": self.prompt_cache_retention,
                    "prompt_cache_options": self.prompt_cache_options}
        if self.top_logprobs is not None or "message.output_text.logprobs" in (self.include or ()):
            if self.stream:  # the chat path has none on streams (its output rails re-cut the chunks)
                param = "top_logprobs" if self.top_logprobs is not None else "include"
                raise errors.invalid_request(f"{param}: logprobs are not available on streamed responses; send "
                                             "stream: false", param=param, code="unsupported_value")
            optional["logprobs"] = True
        body.update({k: v for k, v in optional.items() if v is not None})
        if self.tools:
            body["tools"] = [{"type": "function", "function": t.model_dump(exclude={"type"}, exclude_none=True)}
                             for t in self.tools]
        if self.tool_choice is not None:
            body["tool_choice"] = self.tool_choice if isinstance(self.tool_choice, str) else {
                "type": "function", "function": {"name": self.tool_choice.name}}
        fmt = self.text.format if self.text else None
        if fmt is not None and fmt.type == "json_schema":
            if fmt.schema_ is None or not fmt.name:
                raise errors.invalid_request("text.format: a json_schema format needs name and schema",
                                             param="text.format")
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": fmt.name, "schema": fmt.schema_, **({"strict": fmt.strict} if fmt.strict is not None else {})}}
        elif fmt is not None and fmt.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        if self.text and self.text.verbosity:
            body["verbosity"] = self.text.verbosity
        return body


def _content(item: MessageItem, where: str) -> str | list[dict[str, Any]]:
    if isinstance(item.content, str):
        return item.content
    parts: list[dict[str, Any]] = []
    for j, p in enumerate(item.content):
        if isinstance(p, InputImage):
            if item.role != "user":
                raise errors.invalid_request(f"{where}.content.{j}: images are allowed in user messages only",
                                             param=f"{where}.content.{j}")
            parts.append({"type": "image_url", "image_url": {"url": p.image_url, **(
                {"detail": p.detail} if p.detail in ("low", "high", "auto") else {})}})
        else:
            parts.append({"type": "text", "text": p.text if isinstance(p, InputText) else p.refusal})
    if item.role != "user":  # chat takes text only from the other roles
        return "".join(p["text"] for p in parts)
    return parts


# --- answers ----------------------------------------------------------------------------------------
def response_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def usage_object(u: dict[str, Any] | None) -> dict[str, Any]:
    u = u or {}
    reasoning = int(((u.get("completion_tokens_details") or {}).get("reasoning_tokens")) or 0)
    return {"input_tokens": int(u.get("prompt_tokens") or 0),
            "input_tokens_details": {"cached_tokens": int((u.get("prompt_tokens_details") or {}).get("cached_tokens")
                                                          or 0)},
            "output_tokens": int(u.get("completion_tokens") or 0),
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": int(u.get("total_tokens") or 0)}


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


class Shape:
    """What every response object of one request repeats (the request's settings, echoed)."""

    def __init__(self, request: ResponsesRequest, model: str) -> None:
        self.id = response_id()
        self.created_at = int(time.time())
        self.request = request
        self.model = model

    def response(self, status: str, output: list[dict[str, Any]], *, usage: dict[str, Any] | None = None,
                 finish_reason: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.request
        reason = _INCOMPLETE.get(finish_reason or "")
        if reason:
            status = "incomplete"
        fmt = r.text.format.model_dump(by_alias=True, exclude_none=True) if r.text and r.text.format else {
            "type": "text"}
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "model": self.model, "output": output, "error": None,
            "incomplete_details": {"reason": reason} if reason else None,
            "instructions": r.instructions, "max_output_tokens": r.max_output_tokens,
            "previous_response_id": r.previous_response_id, "temperature": r.temperature, "top_p": r.top_p,
            "tools": [{**t.model_dump(exclude_none=True), "parameters": t.parameters, "strict": t.strict}
                      for t in r.tools or ()],
            "tool_choice": r.tool_choice if isinstance(r.tool_choice, str) else (
                r.tool_choice.model_dump() if r.tool_choice else "auto"),
            "parallel_tool_calls": r.parallel_tool_calls if r.parallel_tool_calls is not None else True,
            "text": {"format": fmt}, "reasoning": {"effort": r.reasoning.effort if r.reasoning else None,
                                                   "summary": None},
            "metadata": r.metadata or {}, "store": r.store, "truncation": "disabled", "user": r.user,
            "service_tier": r.service_tier, "safety_identifier": r.safety_identifier,
            "prompt_cache_key": r.prompt_cache_key, "prompt_cache_retention": r.prompt_cache_retention,
            "top_logprobs": r.top_logprobs or 0, "background": False, "max_tool_calls": None,
            "usage": usage, **(extra or {}),
        }


def message_item(text: str, item_id: str | None = None, status: str = "completed", *,
                 annotations: list[dict[str, Any]] | None = None,
                 logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": logprobs or []}
    return {"type": "message", "id": item_id or f"msg_{uuid.uuid4().hex}", "status": status, "role": "assistant",
            "content": [part] if text or status == "completed" else []}


def _annotation(chat: dict[str, Any]) -> dict[str, Any]:
    """A chat completion annotation as the Responses API writes it (url_citation's fields at the top)."""
    kind = chat.get("type")
    inner = chat.get(kind) if isinstance(kind, str) else None
    return {"type": kind, **inner} if isinstance(inner, dict) else chat


def call_item(call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def response_object(shape: Shape, completion: dict[str, Any]) -> dict[str, Any]:
    choice = completion["choices"][0]
    msg = choice["message"]
    output = [message_item(msg["content"], annotations=[_annotation(a) for a in msg.get("annotations") or ()],
                           logprobs=(choice.get("logprobs") or {}).get("content"))] if msg.get("content") else []
    output += [call_item(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in msg.get("tool_calls")
               or ()]
    return shape.response("completed", output, usage=usage_object(completion.get("usage")),
                          finish_reason=choice["finish_reason"],
                          extra={"citations": completion.get("citations", []), "stratus": completion.get("stratus"),
                                 **served_tier(completion)})


def served_tier(completion: dict[str, Any]) -> dict[str, Any]:
    """The tier the provider says it served (OpenAI's `service_tier`), which replaces the one asked for."""
    tier = completion.get("service_tier")
    return {"service_tier": tier} if tier else {}


def assistant_message(response: dict[str, Any]) -> dict[str, Any]:
    """The chat message a response's output adds to the conversation (what the next turn continues)."""
    text = "".join(p["text"] for item in response["output"] if item["type"] == "message" for p in item["content"])
    calls = [{"id": i["call_id"], "type": "function", "function": {"name": i["name"], "arguments": i["arguments"]}}
             for i in response["output"] if i["type"] == "function_call"]
    return {"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})}
