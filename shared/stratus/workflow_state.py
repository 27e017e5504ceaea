"""The query workflow's typed state, shared by every step (guard, retrieve, generate) and the gateway.

The state machine passes one JSON document from task to task: a QueryRequest, to which Retrieve adds
`retrieval` (RAG mode); Generate reads it (GenerateTask) and replaces it with a GenerateResponse.

What the guard records on its way through one request rides in it too: `GuardState` (QueryRequest.guard)
goes from GuardInput to GuardOutput, so each stage sees what the earlier ones decided without reading the
policy again; `GuardSummary` is what leaves the request (the response, the trace): the verdicts and the
block, never the vault.

A neutral module: it imports only errors, llm.types, retrieval.models, tenants and validation, so the
steps can share it without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from stratus.errors import InvalidInput
from stratus.llm.types import ContextPassage, FinishReason, Message, ToolCall, Usage
from stratus.retrieval.models import Mode as RetrievalMode
from stratus.retrieval.models import RetrievalFilters, RetrieveResponse
from stratus.tenants import TenantId
from stratus.validation import describe_errors

# --- the guard's record ------------------------------------------------------------------------------

Stage = Literal["input", "context", "output"]
# What a rail did: pass (nothing found), flag (found, recorded only), redact (PII replaced),
# block (the request is refused), drop / fence (a retrieved chunk removed / quoted as untrusted data).
Action = Literal["pass", "flag", "redact", "block", "drop", "fence"]


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rail: str
    stage: Stage
    action: Action
    score: float = Field(ge=0, le=1)  # the rail's highest score in this stage
    threshold: float | None = None  # the score at which the rail counts a hit
    details: dict[str, Any] = {}  # e.g. PII entity types, chunk ids dropped, unsupported sentences

    @property
    def hit(self) -> bool:
        return self.action != "pass"


class GuardSummary(BaseModel):
    """The guard's record of one request: safe to return to the caller and to store in its trace."""

    model_config = ConfigDict(extra="forbid")

    verdicts: list[Verdict] = []
    blocked: Verdict | None = None
    # Rails whose verdict could only be recorded (action `flag`) and that run after the response instead:
    # their verdicts reach the request's trace, not this summary (stratus.guard.rails.after_response).
    deferred: list[str] = []

    def flagged(self) -> list[str]:
        return [v.rail for v in self.verdicts if v.hit]


class GuardState(GuardSummary):
    """The summary plus what later stages need. `vault` maps PII placeholders to the caller's values: it
    never reaches a provider, a trace or a log."""

    policy: dict[str, dict[str, Any]]  # the tenant's effective policy (GuardPolicy.rails, dumped)
    canary: str | None = None  # placed in the system prompt; its appearance in an answer is a leak
    vault: dict[str, str] = {}
    search_query: str | None = None  # the unredacted question: retrieval runs inside the stack

    def summary(self) -> GuardSummary:
        return GuardSummary(verdicts=self.verdicts, blocked=self.blocked, deferred=self.deferred)


# --- the workflow's request and response -------------------------------------------------------------

RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/-]{0,63}$")]
QueryMode = Literal["rag", "chat"]
TraceContext = dict[Literal["traceparent", "tracestate"], Annotated[str, StringConstraints(max_length=512)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Parameters(_Strict):
    """Generation parameters a caller may set; unset ones come from the prompt version."""

    max_tokens: int | None = Field(default=None, ge=1, le=100_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    tools: Annotated[list[dict[str, Any]], Field(max_length=128)] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None
    service_tier: str | None = None
    safety_identifier: Annotated[str, StringConstraints(max_length=256)] | None = None
    # The caller's other OpenAI parameters and unknown names, as sent (stratus.llm.parameters.PASSTHROUGH).
    passthrough: dict[str, Any] | None = None

    def caller_values(self) -> dict[str, Any]:
        """Every parameter set, by its OpenAI name (what stratus.llm.parameters decides on)."""
        values = {k: v for k, v in self if v is not None and k != "passthrough"}
        return values | (self.passthrough or {})


class RetrievalOptions(_Strict):
    k: int | None = Field(default=None, ge=1, le=50)
    mode: RetrievalMode = "hybrid"
    filters: RetrievalFilters = RetrievalFilters()
    rerank: bool | None = None  # False: no reranking for this request; None: the tenant's reranker


StickyId = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class StickyKeys(_Strict):
    """What keeps a caller on one side of a prompt rollout (stratus.prompts.rollout): the conversation it
    names, its end user, its API key. Unset: the request takes part in no rollout."""

    conversation: StickyId | None = None
    user: StickyId | None = None
    key: StickyId | None = None


class QueryRequest(_Strict):
    """The workflow's input. `query` is what Retrieve searches for (the last user message by default)."""

    request_id: RequestId
    tenant_id: TenantId
    mode: QueryMode = "rag"
    messages: Annotated[list[Message], Field(min_length=1, max_length=256)]
    query: Annotated[str, StringConstraints(min_length=1, max_length=4000)] | None = None
    model: Name | None = None  # an alias (or deployment); None: the prompt's model
    prompt: Name | None = None  # None: settings.default_rag_prompt / default_chat_prompt
    prompt_label: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = "production"
    prompt_version: int | None = Field(default=None, ge=1)
    parameters: Parameters = Parameters()
    retrieval_options: RetrievalOptions = RetrievalOptions()
    cache: bool = True
    guard: GuardState | None = None  # set by the input rails; None: no rail has run (e.g. a direct call)
    # When the caller stops waiting (epoch milliseconds): no task calls a provider past it. None: the
    # task's own deadline setting only.
    deadline_ms: int | None = Field(default=None, ge=0)
    # The caller's W3C trace context (traceparent, tracestate), set by stratus.aws.workflows.run_workflow:
    # each task's invocation span continues it, so a request and its workflow are one trace. Always present
    # in the state ({} when untraced): the Retrieve task's Parameters read it by path.
    trace_context: TraceContext = {}
    sticky: StickyKeys = StickyKeys()


class GenerateTask(QueryRequest):
    """What the Generate task receives: the request plus, in RAG mode, the Retrieve task's result."""

    retrieval: RetrieveResponse | None = None


class Citation(BaseModel):
    number: int  # the [n] marker in the answer
    chunk_id: int
    document_id: str
    document_version: int
    source_key: str
    title: str | None = None
    score: float


class PromptRef(BaseModel):
    name: str
    version: int
    hash: str
    label: str | None = None
    rollout_id: str | None = None  # the prompt rollout that chose this version (None: the label's own)


class CacheInfo(BaseModel):
    status: Literal["hit_exact", "hit_semantic", "miss", "bypass"]
    similarity: float | None = None
    entry_id: int | None = None


class GenerateResponse(BaseModel):
    request_id: str
    tenant_id: str
    mode: QueryMode
    text: str
    finish_reason: FinishReason
    tool_calls: list[ToolCall] = []
    citations: list[Citation] = []
    model_alias: str
    deployment: str | None  # None when served from cache
    provider: str | None
    model: str | None
    offline: bool  # answered by the offline extractive provider, not a language model
    prompt: PromptRef
    usage: Usage  # provider tokens of this request: zero for a cached answer
    cost_usd: float
    cache: CacheInfo
    attempts: list[dict[str, Any]] = []
    chunk_ids: list[int] = []  # the passages the prompt was built from
    timings_ms: dict[str, float] = {}
    guard: GuardSummary | None = None  # the rails' verdicts (set by the output rails)
    wire: dict[str, Any] = {}  # the provider's response fields passed through (llm.types.Completion.wire)


_Model = TypeVar("_Model", bound=BaseModel)


def parse_model(model: type[_Model], event: object, what: str) -> _Model:
    """Validate `event`; InvalidInput names the first bad field (e.g. `messages.0.role`)."""
    try:
        return model.model_validate(event)
    except ValidationError as err:
        problems, field = describe_errors(err, empty=what, limit=5)
        raise InvalidInput(f"invalid {what}: {problems}", field=field) from None

def new_query(question: str, tenant_id: str, *, mode: QueryMode = "rag", model: str | None = None,
              prompt: str | None = None, k: int | None = None, request_id: str | None = None,
              history: list[Message] | None = None) -> QueryRequest:
    """A workflow input for one question (after an optional conversation), validated."""
    import uuid

    messages = [*(history or []), Message(role="user", content=question)]
    return parse_model(QueryRequest, {
        "request_id": request_id or f"req-{uuid.uuid4().hex}", "tenant_id": tenant_id, "mode": mode,
        "messages": [m.model_dump(exclude_none=True) for m in messages], "query": question, "model": model,
        "prompt": prompt, "retrieval_options": {"k": k},
    }, "query")


def passages_from(task: GenerateTask) -> list[ContextPassage]:
    """The retrieved hits as the numbered passages the prompt shows ([n] markers refer to these)."""
    if task.retrieval is None:
        return []
    return [
        ContextPassage(number=i, chunk_id=h.chunk_id, document_id=h.document_id, document_version=h.document_version,
                       source_key=h.source_key, title=h.title, text=h.text, score=h.score)
        for i, h in enumerate(task.retrieval.hits, start=1)
    ]
