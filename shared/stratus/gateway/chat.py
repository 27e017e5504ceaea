"""Chat completions in OpenAI's shapes: what a model id means, the completion object, the streamed
chunks, and the mapping of a failed query workflow to the API's errors. The steps of an answer, and
their order, are stratus.query's (the query workflow for non-streamed RAG, the same steps in-process
otherwise); this module translates between the OpenAI wire shapes and them, and admits and accounts.

Model ids: `<alias>` or a deployment name is plain chat (the caller's messages, prompt
settings.gateway_chat_prompt); `rag/<alias>` answers from the tenant's documents with citations.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stratus import errors as domain
from stratus.gateway import errors
from stratus.llm.parameters import honouring as honour
from stratus.llm.types import StreamChunk

if TYPE_CHECKING:
    from collections.abc import Generator

    from psycopg import Connection
    from starlette.responses import Response

    from stratus.aws.workflows import WorkflowFailed
    from stratus.config import Settings
    from stratus.gateway.context import RequestContext
    from stratus.gateway.keys import Principal
    from stratus.gateway.openai_models import ChatCompletionRequest, StratusOptions
    from stratus.generation.service import Known
    from stratus.llm.catalog import Deployment
    from stratus.llm.router import Router
    from stratus.llm.types import ToolCallDelta, Usage
    from stratus.query import Hooks
    from stratus.workflow_state import GenerateResponse, GenerateTask, GuardState, GuardSummary, StickyKeys

RAG_PREFIX = "rag/"


@dataclass(frozen=True)
class ModelChoice:
    requested: str  # the id the caller sent (echoed in responses)
    mode: str  # "chat" | "rag"
    alias: str  # a catalog alias or deployment name


def parse_model_id(model: str) -> ModelChoice:
    if model.startswith(RAG_PREFIX):
        return ModelChoice(model, "rag", model[len(RAG_PREFIX):])
    return ModelChoice(model, "chat", model)


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_object(usage: Usage, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAI's usage; `details`, the provider's own completion_tokens_details / prompt_tokens_details
    (Completion.wire["usage"]), pass through, with the cached count Stratus bills."""
    out: dict[str, Any] = {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                           "total_tokens": usage.input_tokens + usage.output_tokens,
                           "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens}}
    if details:
        if isinstance(details.get("prompt_tokens_details"), dict):
            out["prompt_tokens_details"] = details["prompt_tokens_details"] | out["prompt_tokens_details"]
        if "completion_tokens_details" in details:
            out["completion_tokens_details"] = details["completion_tokens_details"]
    return out


def citations_object(response: GenerateResponse) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json") for c in response.citations]


def stratus_object(response: GenerateResponse, request_id: str, timings_ms: dict[str, float]) -> dict[str, Any]:
    cache = response.cache
    return {"request_id": request_id, "cache": cache.status, "cache_similarity": cache.similarity,
            "prompt": _prompt_object(response),
            "model_alias": response.model_alias, "deployment": response.deployment, "provider": response.provider,
            "offline": response.offline, "timings_ms": timings_ms, "cost_usd": response.cost_usd,
            "guard": response.guard.model_dump(mode="json") if response.guard is not None else None}


def _prompt_object(response: GenerateResponse) -> dict[str, Any]:
    ref = response.prompt
    shown: dict[str, Any] = {"name": ref.name, "version": ref.version}
    if ref.rollout_id:  # a rollout chose this version
        shown["rollout_id"] = ref.rollout_id
    return shown


def completion_object(response: GenerateResponse, *, model: str, request_id: str,
                      timings_ms: dict[str, float]) -> dict[str, Any]:
    """OpenAI's chat.completion for a GenerateResponse, plus `citations` and `stratus` extension fields.
    The provider's own fields (response.wire: system_fingerprint, service_tier, usage details, logprobs,
    refusal, annotations) pass through as it sent them; null (annotations: []) where it sent none."""
    wire = response.wire
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None, "refusal": None,
                               "annotations": []}
    message.update(wire.get("message") or {})
    if response.tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in response.tool_calls]
    elif not response.text:
        message["content"] = ""
    return {
        "id": completion_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
        "system_fingerprint": wire.get("system_fingerprint"), "service_tier": wire.get("service_tier"),
        "choices": [{"index": 0, "message": message, "finish_reason": response.finish_reason,
                     "logprobs": (wire.get("choice") or {}).get("logprobs")}, *wire.get("choices", ())],
        "usage": usage_object(response.usage, wire.get("usage")),
        "citations": citations_object(response),
        "stratus": stratus_object(response, request_id, timings_ms),
    }


class ChunkWriter:
    """Builds the chat.completion.chunk objects of one stream (same id and created on every chunk)."""

    def __init__(self, model: str) -> None:
        self.id = completion_id()
        self.created = int(time.time())
        self.model = model
        self.fingerprint: Any = None  # the provider's system_fingerprint and service_tier, from its first chunk
        self.service_tier: Any = None

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "system_fingerprint": self.fingerprint, "service_tier": self.service_tier, "choices": choices,
                **extra}

    def role(self, first: StreamChunk | None = None) -> dict[str, Any]:
        """The chunk that opens the assistant turn: content "" (and refusal null) before text, content null
        before tool calls, as OpenAI sends them."""
        delta: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        if first is not None:
            self.fingerprint = first.wire.get("system_fingerprint")
            self.service_tier = first.wire.get("service_tier")
            if first.tool_calls and not first.text:
                delta = {"role": "assistant", "content": None}
        return self._chunk([{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}])

    def delta(self, chunk: StreamChunk) -> dict[str, Any] | None:
        delta: dict[str, Any] = {}
        if chunk.text:
            delta["content"] = chunk.text
        if chunk.tool_calls:
            delta["tool_calls"] = [_tool_call_delta(d) for d in chunk.tool_calls]
        if not delta:
            return None
        return self._chunk([{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}])

    def final(self, finish_reason: str, response: GenerateResponse, request_id: str,
              timings_ms: dict[str, float]) -> dict[str, Any]:
        """The chunk with finish_reason; citations and the stratus object travel on it."""
        return self._chunk([{"index": 0, "delta": {}, "finish_reason": finish_reason, "logprobs": None}],
                           citations=citations_object(response),
                           stratus=stratus_object(response, request_id, timings_ms))

    def usage(self, usage: Usage, details: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._chunk([], usage=usage_object(usage, details))


def _tool_call_delta(d: ToolCallDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"index": d.index, "function": {"arguments": d.arguments}}
    if d.id:
        out["id"] = d.id
        out["type"] = "function"
    if d.name:
        out["function"]["name"] = d.name
    return out


# --- the query workflow's failures --------------------------------------------------------------------
def workflow_error(err: WorkflowFailed) -> errors.APIError:
    """The API error for a WorkflowFailed: the one error table (stratus.gateway.errors), by the failing
    task's error name, as for the same failure raised in-process."""
    return errors.from_workflow(err.error, err.detail)


# --- the flow ---------------------------------------------------------------------------------------
WORKFLOW_MARGIN_S = 1.5  # tasks stop calling models this long before the gateway stops waiting
CLIENT_CLOSED = 499  # the trace's status for a stream whose client left (nginx's convention)
CHARS_PER_TOKEN = 4  # a conservative prompt estimate for admission; settled to the real count after


def complete_chat(body: ChatCompletionRequest, ctx: RequestContext, who: Principal, conn: Connection,
                  s: Settings) -> Response:
    """POST /v1/chat/completions: limits, model, admission, then the answer (JSON or SSE)."""
    from starlette.responses import JSONResponse

    from stratus import query
    from stratus.db.connection import tenant_transaction
    from stratus.gateway.context import admit_request, finish_task, raise_if_refused
    from stratus.generation.service import Known, get_router

    body.refuse_unsupported(s.forward_unknown_parameters)
    check_limits(body, s)
    parameters = body.parameters(body.output_limit)
    choice = parse_model_id(body.model)
    router = get_router(s)
    # One tenant transaction for the model's override and the admission (each round trip is latency);
    # a refusal commits like an admission (the decision changes nothing) and is raised after it.
    with tenant_transaction(who.tenant_id, conn):
        deployments = _deployments(conn, who.tenant_id, choice, router)  # 404 model_not_found: free
        deployments = honouring(deployments, parameters)  # 400 unsupported_parameter: free
        prompt_key, prompt = _prompt(conn, body, choice, who, s)  # before admission: it holds no locks
        max_out = body.output_limit or min(max(d.max_output_tokens for d in deployments), s.max_output_tokens)
        max_out *= body.n or 1  # n choices: each may use the whole limit
        prompt_tokens = -(-body.prompt_chars() // CHARS_PER_TOKEN)
        if choice.mode == "rag":  # the retrieved passages join the prompt
            prompt_tokens += (body.stratus.k or s.retrieval_k) * s.chunk_max_tokens
        decision = admit_request(conn, ctx, who, estimated_tokens=prompt_tokens + max_out,
                                 max_cost_usd=_max_cost(deployments, prompt_tokens, max_out), settings=s,
                                 in_transaction=True)
    raise_if_refused(ctx, decision)
    task = _task(body, ctx, who, choice, s, parameters)
    known = Known(tenant_exists=True, alias=choice.alias, deployments=deployments,  # the key's tenant exists
                  prompt_key=prompt_key, prompt=prompt.prompt if prompt else None,
                  rollout_id=prompt.rollout_id if prompt else None)
    if choice.mode == "rag" and not body.stream:
        response = _run_workflow(task, ctx, s.generation_deadline_s)  # the workflow runs the rails
    elif body.stream:
        return _stream(body, ctx, task, choice, conn, s, router, known)
    else:  # in-process, the steps in the workflow's order (stratus.query)
        response = query.run_in_process(task, conn=conn, settings=s, router=router, known=known,
                                        defer=ctx.deferred, hooks=_hooks(ctx))
    _account(ctx, response, streamed=False)
    _guard_verdict(ctx, response.guard)  # after accounting: an answer blocked on the way out was paid for
    _after_response_rails(ctx, task, response)
    _keep_sample(ctx, task, response, s)
    payload = completion_object(response, model=choice.requested, request_id=ctx.request_id,
                                timings_ms=_timings(ctx, response))
    return JSONResponse(payload, background=finish_task(ctx))


# --- guard rails ---------------------------------------------------------------------------------------
def _hooks(ctx: RequestContext) -> Hooks:
    """What the in-process pipeline tells the request: each step's time, and each rail's verdicts (a
    block is the API's 400 guard_<rail>; on the way in, before any provider is called or billed)."""
    from stratus.query import Hooks

    return Hooks(step=ctx.step, verdict=lambda guard: _guard_verdict(ctx, guard))


def _guard_verdict(ctx: RequestContext, guard: GuardState | GuardSummary | None) -> None:
    """Put the rails' verdicts on the trace; a block becomes the API's error."""
    if guard is None:
        return
    summary = guard.summary() if hasattr(guard, "summary") else guard
    ctx.trace["guard"] = summary.model_dump(mode="json")
    if summary.blocked is not None:
        raise errors.guard_blocked(summary.blocked)


def _after_response_rails(ctx: RequestContext, task: GenerateTask, response: GenerateResponse,
                          sent: str | None = None) -> None:
    """The output rails the answer's guard left for after the response (they only record): run before its
    trace is written (stratus.gateway.context.after_response), on the text the caller got (`sent`, for a
    stream: its response holds the model's own text, before the rails redacted it)."""
    from functools import partial

    from stratus.gateway.context import AFTER_RAILS_MIN_S, INVOCATION_MARGIN_S
    from stratus.guard.stages import choice_index
    from stratus.query import after_response_rails
    from stratus.workflow_state import passages_from

    guard = response.guard
    if guard is None or not guard.deferred or guard.blocked is not None:
        return
    # In-process the prompt's passages are at hand; a workflow's answer names them by chunk id only.
    passages = passages_from(task) if task.retrieval is not None else None
    # The other choices (n > 1) as the caller got them: their text after the rails on the response path,
    # numbered as the rails there number them (stratus.guard.stages.choice_index).
    others = [(choice_index(c, i), text) for i, c in enumerate(response.wire.get("choices") or [], start=1)
              if isinstance(text := (c.get("message") or {}).get("content"), str)] if sent is None else []
    # Choices after the first start only while the settlement and the trace write still fit the invocation.
    stop_at = None if ctx.deadline_at is None else ctx.deadline_at - INVOCATION_MARGIN_S - AFTER_RAILS_MIN_S / 2
    ctx.after_rails = partial(after_response_rails, tenant_id=task.tenant_id,
                              text=response.text if sent is None else sent,
                              rails=list(guard.deferred), passages=passages, chunk_ids=list(response.chunk_ids),
                              other_choices=others, stop_at=stop_at)


def _keep_sample(ctx: RequestContext, task: GenerateTask, response: GenerateResponse, s: Settings) -> None:
    """For the requests online evaluation samples: keep their content (redacted) after the response."""
    from stratus.evals.sampling import is_sampled

    # Requests a prompt rollout split are sampled more: its two versions need samples to be compared.
    rate = max(s.eval_sample_rate, s.eval_rollout_sample_rate) if response.prompt.rollout_id else s.eval_sample_rate
    if not is_sampled(ctx.request_id, rate) or response.tool_calls:
        return
    from stratus.evals.samples import record_sample

    question = task.query or next((m.text() for m in reversed(task.messages) if m.role == "user"), "")
    latency = ctx.elapsed_ms()
    ctx.deferred.append(lambda conn: record_sample(conn, tenant_id=task.tenant_id, request_id=ctx.request_id,
                                                   mode=task.mode, question=question, response=response,
                                                   latency_ms=latency))


def check_limits(body: ChatCompletionRequest, s: Settings) -> None:
    if len(body.messages) > s.max_messages:
        raise errors.invalid_request(f"messages: {len(body.messages)} messages is over the limit max_messages "
                                     f"({s.max_messages})", param="messages", code="too_many_messages")
    limit = body.output_limit
    if limit is not None and limit > s.max_output_tokens:
        field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise errors.invalid_request(f"{field}: {limit} is over the limit max_output_tokens "
                                     f"({s.max_output_tokens})", param=field, code="max_tokens_too_large")


def _deployments(conn: Connection, tenant_id: str, choice: ModelChoice, router: Router) -> list[Deployment]:
    """The deployments the router may try for the alias, after the tenant's override (the one place a
    request's alias is resolved: generation and the router are handed the list). In the caller's tenant
    transaction."""
    from stratus.db import generations

    override = generations.model_override(conn, tenant_id, choice.alias)
    try:
        deployments: list[Any] = router.catalog.deployments_for(choice.alias, override)
        return deployments
    except domain.NotFound:
        raise errors.not_found(f"model {choice.requested!r} does not exist; GET /v1/models lists the models",
                               param="model", code="model_not_found") from None


def honouring(deployments: list[Deployment], parameters: dict[str, Any]) -> list[Deployment]:
    """The deployments that can honour every parameter the caller set (stratus.llm.parameters: the
    others are left out of this request's list); 400 naming the first parameter when none can."""
    passthrough = parameters.get("passthrough")
    values = {k: v for k, v in parameters.items() if k != "passthrough"} | passthrough if passthrough else parameters
    kept, refused = honour(deployments, values)
    if refused is not None:
        raise errors.invalid_request(refused.message(), param=refused.parameter, code="unsupported_parameter")
    return kept


def _prompt(conn: Connection, body: ChatCompletionRequest, choice: ModelChoice, who: Principal,
            s: Settings) -> tuple[Any, Any]:
    """Plain chat's prompt version, read in the request's admission transaction so that generation need
    not open one for it: ((name, label, version), the version), or (None, None) where generation resolves
    it itself (RAG; or a prompt that does not resolve: generation raises that error, after admission, as
    it always did). The version is the label's, or its active rollout's candidate for this caller."""
    if choice.mode != "chat":
        return None, None
    from stratus.errors import StratusError
    from stratus.prompts import ensure_prompts_synced
    from stratus.prompts.rollout import serve_prompt

    opts = body.stratus
    key = (opts.prompt or s.gateway_chat_prompt, opts.prompt_label or "production", None)
    try:
        ensure_prompts_synced()
        return key, serve_prompt(conn, who.tenant_id, key[0], label=key[1], sticky=sticky_keys(body, who))
    except StratusError:  # found nothing, or an invalid name or label: no statement failed
        return None, None


def sticky_keys(body: ChatCompletionRequest, who: Principal) -> StickyKeys:
    """What keeps this caller on one side of a prompt rollout: the conversation it names
    (`stratus.conversation_id`), its end user (`safety_identifier`, else `user`; Anthropic's
    `metadata.user_id` arrives as `user`), and its API key."""
    from stratus.workflow_state import StickyKeys

    return StickyKeys(conversation=body.stratus.conversation_id, user=body.safety_identifier or body.user or None,
                      key=who.key_id)


def _max_cost(deployments: list[Deployment], prompt_tokens: int, max_out: int) -> float:
    """The worst case the budget must hold: the most expensive deployment the router might reach."""
    from stratus.llm.pricing import cost_usd
    from stratus.llm.types import Usage

    usage = Usage(input_tokens=prompt_tokens, output_tokens=max_out)
    return max(cost_usd(d.price, usage) for d in deployments)


def _task(body: ChatCompletionRequest, ctx: RequestContext, who: Principal, choice: ModelChoice,
          s: Settings, parameters: dict[str, Any]) -> GenerateTask:
    from stratus.workflow_state import GenerateTask, parse_model

    messages = [m.as_domain() for m in body.messages]
    opts = body.stratus
    fields: dict[str, Any] = {"request_id": ctx.request_id, "tenant_id": who.tenant_id, "mode": choice.mode,
                              "messages": messages, "model": choice.alias, "cache": _use_cache(opts, choice, s),
                              "parameters": parameters,
                              # No model call outlives the answer's budget, nor (on Lambda) the invocation.
                              "deadline_ms": ctx.deadline_ms(s.stream_deadline_s if body.stream
                                                             else s.generation_deadline_s)}
    if opts.prompt_label:
        fields["prompt_label"] = opts.prompt_label
    fields["sticky"] = sticky_keys(body, who)
    if choice.mode == "rag":
        fields["prompt"] = opts.prompt
        fields["query"] = _question(body)
        retrieval: dict[str, Any] = {"k": opts.k}
        if opts.retrieval_mode:
            retrieval["mode"] = opts.retrieval_mode
        if opts.filters:
            retrieval["filters"] = opts.filters
        if opts.rerank is not None:
            retrieval["rerank"] = opts.rerank
        fields["retrieval_options"] = retrieval
    else:
        fields["prompt"] = opts.prompt or s.gateway_chat_prompt
    return parse_model(GenerateTask, fields, "chat completion request")


def _use_cache(opts: StratusOptions, choice: ModelChoice, s: Settings) -> bool:
    if opts.cache is not None:
        return bool(opts.cache)
    return choice.mode == "rag" or s.gateway_chat_cache


def _question(body: ChatCompletionRequest) -> str:
    for m in reversed(body.messages):
        if m.role == "user":
            text = m.content if isinstance(m.content, str) else "".join(
                str(p.get("text", "")) for p in m.content or () if p.get("type") == "text")
            if text.strip():
                return text[:4000]
    raise errors.invalid_request("messages: a RAG model needs a user message with text to search for",
                                 param="messages")


def _run_workflow(task: GenerateTask, ctx: RequestContext, deadline_s: float) -> GenerateResponse:
    """Non-streamed RAG: the query workflow (retrieve, then generate), as every other client runs it."""
    from stratus.aws.workflows import WorkflowFailed, WorkflowTimedOut, run_workflow
    from stratus.workflow_state import GenerateResponse

    t = time.perf_counter()
    # The gateway's remaining time bounds everything under it: the wait for the workflow, and (a little
    # earlier, so the answer still comes back through the output rails) every task's model calls. A
    # workflow that outlived the gateway would leave the request unanswered, unsettled and untraced.
    budget_s = ctx.budget_s(deadline_s)
    if budget_s <= WORKFLOW_MARGIN_S:
        raise errors.APIError(504, "the request's deadline passed before the workflow started",
                              type="api_error", code="timeout")
    payload = task.model_dump(mode="json", exclude={"retrieval"})
    payload["deadline_ms"] = int((time.time() + budget_s - WORKFLOW_MARGIN_S) * 1000)
    try:
        result = run_workflow(payload, timeout_s=budget_s)
    except (WorkflowTimedOut, WorkflowFailed) as err:
        raise errors.from_exception(err) from None
    ctx.step("workflow", t)
    output = result.output
    if "text" not in output:  # the input rails stopped the workflow: it returns the request's state
        from stratus.workflow_state import GuardState

        if output.get("guard"):
            _guard_verdict(ctx, GuardState.model_validate(output["guard"]))
        raise errors.APIError(500, "the query workflow ended without an answer", type="api_error")
    return GenerateResponse.model_validate(output)


@contextmanager
def _second_connection() -> Iterator[Connection | None]:
    """A pooled connection for hybrid retrieval's dense side while it retrieves; None (the two sides run in
    turn on the request's connection) when none can be opened."""
    from stratus.gateway import pool

    with ExitStack() as stack:
        try:
            conn: Connection | None = stack.enter_context(pool.lease())
        except domain.DatabaseUnavailable:
            conn = None
        yield conn


def _stream(body: ChatCompletionRequest, ctx: RequestContext, task: GenerateTask, choice: ModelChoice,
            conn: Connection, s: Settings, router: Router, known: Known) -> Response:
    """Streamed chat or RAG, in-process (a workflow cannot stream). The input rails, retrieval, the
    context rails, the prompt, the cache and the first model chunk happen before the response starts, so
    their failures are plain JSON errors. The output rails hold each sentence back until they have passed
    it (stratus.guard.streaming); a block after the first byte ends the stream with an error event."""
    from stratus import query
    from stratus.gateway import sse
    from stratus.gateway.context import bill_worst_case, finish_task

    # Hybrid retrieval's dense side runs beside its lexical side on a pooled connection of its own.
    task = query.before_stream(task, conn=conn, settings=s, hooks=_hooks(ctx),
                               dense_lease=_second_connection if s.retrieval_parallel else None)
    t = time.perf_counter()
    # Records on the request's own leased connection (held until the response and its task are done).
    answer = query.open_stream(task, conn=conn, settings=s, router=router, known=known)
    answer.start()
    ctx.step("first_chunk", t)
    bill_worst_case(ctx)
    writer = ChunkWriter(choice.requested)
    deadline_s = (task.deadline_ms or 0) / 1000

    def events() -> Generator[bytes, None, None]:
        yield sse.event(writer.role(answer.first))
        sent: list[str] = []  # the answer's text as the caller gets it
        try:
            try:
                for chunk in answer:
                    if deadline_s and time.time() > deadline_s:
                        raise errors.APIError(504, "the stream's deadline passed before the answer was complete",
                                              type="api_error", code="timeout")
                    data = writer.delta(chunk)
                    if data is not None:
                        sent.append(chunk.text)
                        yield sse.event(data)
                    if chunk.finish_reason is None:
                        continue
                    response = answer.response
                    assert response is not None, "the answer is whole after its last chunk"
                    if answer.guard is not None and response.guard is not None:
                        ctx.trace["guard"] = response.guard.model_dump(mode="json")
                        _after_response_rails(ctx, task, response, sent="".join(sent))
                    _account(ctx, response, streamed=True)
                    _keep_sample(ctx, task, response, s)
                    yield sse.event(writer.final(chunk.finish_reason, response, ctx.request_id,
                                                 _timings(ctx, response)))
                    if body.include_usage:
                        yield sse.event(writer.usage(response.usage, chunk.wire.get("usage")))
            except query.Blocked as blocked:
                _guard_verdict(ctx, blocked.summary)  # raises: the block's error event below
            yield sse.DONE
        except GeneratorExit:  # the client left: the server stops iterating and closes this generator
            # What the provider produced until now is paid for; its usage arrives only with the last chunk,
            # so the request settles at what admission reserved (bill_worst_case), and the trace says so.
            ctx.trace.update(status="error", status_code=CLIENT_CLOSED, error_code="client_closed",
                             error_message="the client closed the connection before the answer was complete",
                             streamed=True, cost_usd=ctx.spent_usd)
            raise
        except Exception as err:  # noqa: BLE001 - after the first byte, an error event is the only way to say it
            mapped = errors.from_exception(err)
            ctx.trace.update(status="error", status_code=mapped.status, error_code=mapped.code,
                             error_message=mapped.message[:500], streamed=True)
            yield sse.error_event(mapped.body())
        finally:
            answer.close()  # stops the provider's stream (and its billing) if it is still running

    return sse.EventStream(events(), background=finish_task(ctx))


def _account(ctx: RequestContext, response: GenerateResponse, *, streamed: bool) -> None:
    """What settles the reservation and fills the trace."""
    ctx.spent_tokens = response.usage.input_tokens + response.usage.output_tokens
    ctx.spent_usd = response.cost_usd
    ctx.trace.update(model_alias=response.model_alias, deployment=response.deployment, provider=response.provider,
                     prompt_name=response.prompt.name, prompt_version=response.prompt.version,
                     input_tokens=response.usage.input_tokens, output_tokens=response.usage.output_tokens,
                     cost_usd=response.cost_usd, cache_status=response.cache.status, chunk_ids=response.chunk_ids,
                     timings_ms=dict(response.timings_ms), streamed=streamed)


def _timings(ctx: RequestContext, response: GenerateResponse) -> dict[str, float]:
    return {**response.timings_ms, **ctx.timings_ms, "gateway": ctx.elapsed_ms()}
