"""The OpenAI request bodies the gateway accepts, validated at the edge.

Every parameter of the chat-completions API is accepted here; what each provider does with it (forward,
translate, or refuse with 400 naming it) is the one table in stratus.llm.parameters, applied to the
model's deployments before admission (stratus.gateway.chat). Names that are no OpenAI parameter at all
(a client's `extra_body`) are kept and forwarded to OpenAI-compatible upstreams unless
settings.forward_unknown_parameters is off (then 400 `unknown_parameter`, as before).
Stratus's own options travel in the `stratus` object (the SDK's `extra_body={"stratus": {...}}`), which is
never forwarded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from stratus.gateway import errors
from stratus.llm.parameters import PASSTHROUGH, PASSTHROUGH_SET
from stratus.validation import INT4_MAX

ModelId = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCallFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    arguments: str = ""


class ToolCallIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(BaseModel):
    # Fields a client echoes back from an earlier completion (refusal, annotations, audio) are ignored.
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: Annotated[str, StringConstraints(max_length=128)] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: Annotated[str, StringConstraints(max_length=256)] | None = None

    @field_validator("content")
    @classmethod
    def _parts_have_types(cls, value: Any) -> Any:
        if isinstance(value, list):
            for i, part in enumerate(value):
                if not isinstance(part.get("type"), str):
                    raise ValueError(f"content part {i} needs a string 'type'")
                if part["type"] == "text" and not isinstance(part.get("text"), str):
                    raise ValueError(f"content part {i} of type 'text' needs a string 'text'")
        return value

    def as_domain(self) -> dict[str, Any]:
        """The stratus.llm.types.Message fields."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                                 for c in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        return out


class StreamOptions(_Body):
    include_usage: bool = False


class StratusOptions(_Body):
    """Stratus's extensions (`extra_body={"stratus": {...}}`)."""

    prompt: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/-]{0,63}$")] | None = None
    prompt_label: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] | None = None
    k: int | None = Field(default=None, ge=1, le=50)
    retrieval_mode: Literal["hybrid", "lexical", "dense"] | None = None
    filters: dict[str, Any] | None = None
    # False: this RAG answer skips the tenant's reranker (a request cannot choose one the tenant did not).
    rerank: bool | None = None
    # None: RAG answers use the response cache; plain chat only when STRATUS_GATEWAY_CHAT_CACHE is on
    # (an OpenAI client asking twice at temperature 0.7 expects two samples, not one stored answer).
    cache: bool | None = None
    # Keeps a conversation on one version while a prompt rollout splits its label (docs/prompts.md).
    conversation_id: Annotated[str, StringConstraints(pattern=r"^[!-~]{1,256}$")] | None = None


class ChatCompletionRequest(BaseModel):
    # Unknown names are kept (model_extra) and forwarded or refused by refuse_unsupported.
    model_config = ConfigDict(extra="allow")

    model: ModelId
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    # Bounded by what admission's counters store (int4): a bigger limit is a 400, not a database error.
    max_tokens: int | None = Field(default=None, ge=1, le=INT4_MAX)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=INT4_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    response_format: dict[str, Any] | None = None
    tools: Annotated[list[dict[str, Any]], Field(max_length=128)] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    service_tier: Annotated[str, StringConstraints(max_length=32)] | None = None
    safety_identifier: Annotated[str, StringConstraints(max_length=256)] | None = None
    # Forwarded as is where the provider has them (stratus.llm.parameters.PASSTHROUGH); validated by it.
    n: int | None = Field(default=None, ge=1, le=128)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    prediction: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    prompt_cache_key: Annotated[str, StringConstraints(max_length=1024)] | None = None
    prompt_cache_retention: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    stratus: StratusOptions = StratusOptions()

    @property
    def output_limit(self) -> int | None:
        """max_completion_tokens (the current name) wins over max_tokens (the deprecated one)."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def refuse_unsupported(self, forward_unknown: bool = True) -> None:
        """400 naming a parameter Stratus cannot deliver whatever the provider, or an unknown one when
        unknown names may not be forwarded (what each provider does is decided later, per deployment)."""
        if self.model_extra and not forward_unknown:
            name = next(iter(self.model_extra))
            raise errors.schema_mismatch(f"invalid request body: {name}: Extra inputs are not permitted",
                                         param=name, code="unknown_parameter")
        if self.stream and self.n not in (None, 1):
            raise errors.invalid_request("n: several choices are served on plain answers only; send stream: false",
                                         param="n", code="unsupported_value")
        if self.stream and (self.logprobs or self.top_logprobs):
            raise errors.invalid_request("logprobs: not available on streamed answers (the output rails re-cut "
                                         "the chunks); send stream: false", param="logprobs",
                                         code="unsupported_value")
        if self.stream_options is not None and not self.stream:
            raise errors.invalid_request("stream_options is only allowed with stream: true", param="stream_options")

    def parameters(self, max_tokens: int | None) -> dict[str, Any]:
        """stratus.workflow_state.Parameters fields (unset ones come from the prompt): the typed ones, and
        `passthrough`, the other OpenAI parameters and unknown names the caller set, under their names."""
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        values = {"max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p, "stop": stop,
                  "seed": self.seed, "tools": self.tools, "tool_choice": self.tool_choice,
                  "response_format": self.response_format, "user": self.user,
                  "parallel_tool_calls": self.parallel_tool_calls, "reasoning_effort": self.reasoning_effort,
                  "service_tier": self.service_tier, "safety_identifier": self.safety_identifier}
        out = {k: v for k, v in values.items() if v is not None}
        # Only the names the caller set (pydantic keeps them), in the table's order.
        given = self.model_fields_set & PASSTHROUGH_SET
        passthrough = {name: value for name in PASSTHROUGH if name in given and (value := getattr(self, name))
                       is not None} if given else {}
        if self.model_extra:
            passthrough.update(self.model_extra)
        if passthrough:
            out["passthrough"] = passthrough
        return out

    def prompt_chars(self) -> int:
        """Characters the model will read (text parts, tool calls, tool schemas): a token estimate's input."""
        total = 0
        for m in self.messages:
            if isinstance(m.content, str):
                total += len(m.content)
            elif m.content:
                total += sum(len(str(p["text"])) if p.get("type") == "text" and "text" in p else NON_TEXT_PART_CHARS
                             for p in m.content)
            total += sum(len(c.function.name) + len(c.function.arguments) for c in m.tool_calls or ())
        if self.tools:
            total += sum(len(str(t)) for t in self.tools)
        return total


# An image or file part, for the admission estimate: a detailed image is about 1,100-1,500 tokens at the
# providers we route to; counted as 1,500 tokens (4 characters each) so the reservation stays above it.
NON_TEXT_PART_CHARS = 6_000


class EmbeddingRequest(_Body):
    model: ModelId
    # Token arrays are ids in OpenAI's models' tokenizer: passed to those models, refused for the others.
    input: str | list[str] | list[Annotated[int, Field(ge=0)]] | list[list[Annotated[int, Field(ge=0)]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: Annotated[str, StringConstraints(max_length=256)] | None = None

    def token_ids(self, max_inputs: int) -> list[list[int]] | None:
        """The token arrays (one array of ints is one input), or None when the input is text; 400 naming
        `input` for an empty one."""
        values = self.input
        if isinstance(values, str) or not values or isinstance(values[0], str):
            return None
        arrays = [values] if isinstance(values[0], int) else values
        if len(arrays) > max_inputs:
            raise errors.invalid_request(f"input: at most {max_inputs} inputs per request", param="input")
        for i, ids in enumerate(arrays):
            if not ids:
                raise errors.invalid_request(f"input.{i} is an empty token array", param="input")
        return arrays

    def texts(self, max_inputs: int) -> list[str]:
        """The inputs as strings; 400 naming `input` otherwise (`dimensions` is the model's to judge: the
        route checks it against the model asked for). Token arrays: see token_ids."""
        values = [self.input] if isinstance(self.input, str) else list(self.input)
        if not values:
            raise errors.invalid_request("input must not be empty", param="input")
        if not all(isinstance(v, str) for v in values):
            raise errors.invalid_request("input: token arrays are taken by OpenAI's embedding models only; send "
                                         "text", param="input", code="unsupported_value")
        texts = cast(list[str], values)  # every item was checked to be a str just above
        if len(texts) > max_inputs:
            raise errors.invalid_request(f"input: at most {max_inputs} texts per request", param="input")
        for i, v in enumerate(texts):
            if not v.strip():
                raise errors.invalid_request(f"input.{i} is empty", param="input")
        return texts
