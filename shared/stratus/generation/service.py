"""Generate one answer: resolve the prompt version, consult the response cache, call the routed model,
attach citations, and record tokens, cost and attempts. With tracing on each of those is a span
(`prompt`, `cache_lookup`, `model_call` with one `provider_attempt` per try, `record`).

Database work happens in two short tenant transactions (before and after the model call): a
transaction is never held open while a provider is thinking.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

from stratus.citations import citations_for
from stratus.config import Settings, get_settings
from stratus.db import generations as generation_rows
from stratus.db.connection import get_connection, relax_commit, tenant_transaction
from stratus.llm import errors as llm_errors
from stratus.llm.catalog import Deployment, load_catalog
from stratus.llm.router import RetryPolicy, Router, default_breaker
from stratus.llm.types import ChatRequest, ContextPassage, Message, Usage
from stratus.reindex import models as tenant_models
from stratus.spans import span
from stratus.workflow_state import CacheInfo, GenerateResponse, GenerateTask, PromptRef, passages_from

_routers: dict[int, Router] = {}


def get_router(settings: Settings | None = None) -> Router:
    """The router for the configured catalog, reused across warm invocations (its breaker too)."""
    s = settings or get_settings()
    catalog = load_catalog(s)
    router = _routers.get(id(catalog))
    if router is None:
        router = Router(catalog, policy=RetryPolicy.from_settings(s), breaker=default_breaker(s))
        _routers.clear()
        _routers[id(catalog)] = router
    return router


def _question(task: GenerateTask) -> str:
    if task.query:
        return task.query
    for message in reversed(task.messages):
        if message.role == "user":
            return message.text()
    return task.messages[-1].text()


def _cache_question(task: GenerateTask) -> tuple[str, bool]:
    """What the cache keys on, and whether it is one question (matchable by meaning); a conversation is
    matched exactly only, since a "yes" means nothing without its history. RAG prompts ignore a client's
    system messages, so they do not key; in plain chat they shape the answer, so they do."""
    from stratus.cache.keys import conversation_text, is_single_question

    if task.mode == "rag":
        turns = [m for m in task.messages if m.role != "system"]
        single = is_single_question(turns)
        return (_question(task) if single else conversation_text(turns)), single
    return conversation_text(list(task.messages)), is_single_question(list(task.messages))


@dataclass
class Prepared:
    """What is known before the model is called: the rendered request, the cache's verdict, and how to
    store the answer. Shared by `generate` and the streamed generation (stratus.generation.streaming)."""

    alias: str
    deployments: list[Deployment]  # what the router may try, in order: resolved once per request
    request: ChatRequest
    prompt_ref: PromptRef
    passages: list[ContextPassage]
    timings: dict[str, float]
    started: float
    use_cache: bool
    scope: Any = None
    question: str = ""
    embedding: Any = None
    hit: Any = None

    def store_args(self, completion_ok: bool, s: Settings) -> tuple[Any, str, list[ContextPassage], Any] | None:
        """The cache store's arguments when this answer may be cached (complete, text only)."""
        if self.use_cache and s.cache_ttl_s > 0 and completion_ok:
            return self.scope, self.question, self.passages, self.embedding
        return None


@dataclass(frozen=True)
class Known:
    """What a caller has already read in this request (the gateway authenticates the tenant and looks up
    its model override before admission), so generation does not read it again."""

    tenant_exists: bool = False
    alias: str | None = None
    deployments: list[Deployment] | None = None  # the alias's, after the tenant's override
    # The prompt version (name, label, version) resolves to, read in the caller's transaction: the
    # request's own, so generation need not open a transaction only to read it.
    prompt_key: tuple[str, str, int | None] | None = None
    prompt: Any = None
    rollout_id: str | None = None  # the prompt rollout that chose `prompt` (stratus.prompts.rollout)


NOTHING_KNOWN = Known()


def prepare(task: GenerateTask, s: Settings, router: Router, conn: Any, known: Known = NOTHING_KNOWN) -> Prepared:
    """Resolve the prompt and model, render the request and consult the cache, in one short tenant
    transaction. NotFound (tenant, model) and InvalidInput surface here, before any model is called."""
    from stratus import cache
    from stratus.prompts import ensure_prompts_synced
    from stratus.prompts.rollout import serve_prompt

    ensure_prompts_synced()  # publishes the packaged prompt files once per process (no-op when current)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    if task.retrieval is not None:
        timings["retrieve"] = float(task.retrieval.timings_ms.get("total", 0.0))
    passages = passages_from(task)
    if task.mode == "rag" and task.retrieval is None:
        from stratus.errors import InvalidInput

        raise InvalidInput("a RAG generation needs the Retrieve task's result", field="retrieval")
    prompt_name = task.prompt or (s.default_rag_prompt if task.mode == "rag" else s.default_chat_prompt)

    given = known.prompt if known.prompt_key == (prompt_name, task.prompt_label, task.prompt_version) else None
    # Everything known already and no cache to consult: no transaction (its round trips are latency).
    unit = nullcontext() if (given is not None and known.tenant_exists and known.deployments is not None
                             and task.model is not None and known.alias == task.model
                             and not (s.cache_enabled and task.cache)) else tenant_transaction(task.tenant_id, conn)
    with unit:
        t = time.perf_counter()
        with span("prompt", prompt=prompt_name, label=task.prompt_label) as step:
            if not known.tenant_exists and not generation_rows.tenant_exists(conn, task.tenant_id):
                from stratus.errors import NotFound

                raise NotFound(f"unknown tenant {task.tenant_id!r}", field="tenant_id")
            if given is not None:
                prompt, rollout_id = given, known.rollout_id
            else:  # the label's version, or its active rollout's candidate for this caller's sticky keys
                served = serve_prompt(conn, task.tenant_id, prompt_name, label=task.prompt_label,
                                      version=task.prompt_version, sticky=task.sticky)
                prompt, rollout_id = served.prompt, served.rollout_id
            alias = task.model or prompt.model or router.catalog.default_alias
            if known.alias == alias and known.deployments is not None:
                deployments = known.deployments
            else:  # an unknown model fails here, before any work
                deployments = router.catalog.deployments_for(
                    alias, generation_rows.model_override(conn, task.tenant_id, alias))
            deployments = _honouring(deployments, task)
            request = _chat_request(task, prompt, passages)
            step.annotate(prompt_version=prompt.version, model_alias=alias)
        timings["prompt"] = ms_since(t)
        # Parameters passed through unseen (logprobs, ...) shape a response the cache does not keep.
        use_cache = s.cache_enabled and task.cache and not request.tools and not request.passthrough
        prep = Prepared(alias=alias, deployments=deployments, request=request, passages=passages, timings=timings,
                        started=started, use_cache=use_cache,
                        prompt_ref=PromptRef(name=prompt.name, version=prompt.version, hash=prompt.content_hash,
                                             label=task.prompt_label, rollout_id=rollout_id))
        if use_cache:
            embedding_model = tenant_models.query_model(task.tenant_id, s, conn)
            prep.scope = cache.CacheScope(
                task.tenant_id, prompt.content_hash, alias, cache.params_hash(request),
                embedding_model="" if embedding_model == s.embedding_model else embedding_model)
            prep.question, single = _cache_question(task)
            semantic = s.cache_semantic and single

            def embed() -> Any:  # only when the exact lookup misses; kept for storing the answer
                e = time.perf_counter()
                with span("cache_embed", model=embedding_model):
                    prep.embedding = cache.embed_question(prep.question, embedding_model)
                timings["embed"] = ms_since(e)
                return prep.embedding

            t = time.perf_counter()
            with span("cache_lookup", semantic=semantic) as step:
                prep.hit = cache.lookup(conn, prep.scope, prep.question, passages, embed if semantic else None,
                                        semantic=semantic, threshold=s.cache_similarity,
                                        embedding_model=embedding_model)
                step.annotate(cache_hit=prep.hit is not None, cache_kind=prep.hit.kind if prep.hit else None)
            timings["cache"] = round(ms_since(t) - timings.get("embed", 0.0), 3)
    return prep


def _honouring(deployments: list[Deployment], task: GenerateTask) -> list[Deployment]:
    """The deployments that can honour the caller's parameters (stratus.llm.parameters); InvalidInput
    naming the first one no deployment honours."""
    values = task.parameters.caller_values()
    if not values:
        return deployments
    from stratus.llm.parameters import honouring

    kept, refused = honouring(deployments, values)
    if refused is not None:
        from stratus.errors import InvalidInput

        raise InvalidInput(refused.message(), field=refused.parameter)
    return kept


def content_attributes(task: GenerateTask, request: ChatRequest, answer: str) -> dict[str, str]:
    """The prompt and completion text for the model call's span (settings.trace_content), as the GenAI
    conventions name them: the messages as the provider got them, which the input rails' PII redaction has
    already rewritten (placeholders, never the caller's values; the vault stays in the workflow state).
    A request the PII rail did not redact on the way in records no text, only why."""
    import json

    guard = task.guard
    if guard is None or not any(v.rail == "pii" and v.stage == "input" for v in guard.verdicts):
        return {"stratus.content_omitted": "pii_rail_not_run"}
    messages = [{"role": m.role, "content": m.text()} for m in request.messages]
    return {"gen_ai.input.messages": json.dumps(messages, ensure_ascii=False),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": answer}], ensure_ascii=False)}


def cached_response(task: GenerateTask, prep: Prepared) -> GenerateResponse:
    """The answer a cache hit gives (its citations renumbered to this request's passage order)."""
    from stratus import cache

    hit = prep.hit
    stored = hit.response
    text = cache.renumber_citations(stored["text"], hit.renumbering)  # passages may come in another order
    status: Literal["hit_exact", "hit_semantic"] = "hit_exact" if hit.kind == "exact" else "hit_semantic"
    return GenerateResponse(
        request_id=task.request_id, tenant_id=task.tenant_id, mode=task.mode, text=text,
        finish_reason=stored.get("finish_reason", "stop"),
        citations=citations_for(text, prep.passages), model_alias=prep.alias, deployment=None,
        provider=stored.get("provider"), model=stored.get("model"), offline=stored.get("provider") == "offline",
        prompt=prep.prompt_ref, usage=Usage(), cost_usd=0.0,
        cache=CacheInfo(status=status, similarity=round(float(hit.similarity), 4), entry_id=hit.entry_id),
        chunk_ids=[p.chunk_id for p in prep.passages], timings_ms=prep.timings)


def generate(task: GenerateTask, *, settings: Settings | None = None, router: Router | None = None,
             conn: Any = None, defer: list[Callable[[Any], None]] | None = None,
             known: Known = NOTHING_KNOWN) -> GenerateResponse:
    """One answer. With `defer`, the writes that follow the answer (cache store, generation row) are
    appended to it as functions of a connection instead of run now: a caller that has already answered
    its client (the gateway's after-response task) runs them off the critical path. `known` skips the
    reads the caller has already done."""
    s = settings or get_settings()
    router = router or get_router(s)
    conn = conn or get_connection()  # applies pending migrations on a cold start
    prep = prepare(task, s, router, conn, known)
    if prep.hit is not None:
        return _finish_or_defer(conn, s, task, cached_response(task, prep), prep.started, None, defer)

    timings = prep.timings
    t = time.perf_counter()
    try:
        with span("model_call", model_alias=prep.alias) as step:
            routed = router.complete(prep.alias, prep.request, deployments=prep.deployments,
                                     deadline_s=time_left(task, s))
            step.annotate(provider=routed.deployment.provider, deployment=routed.deployment.name,
                          attempts=len(routed.attempts))
            if s.trace_content and step.recording:
                step.set_attributes(content_attributes(task, prep.request, routed.completion.text))
    except llm_errors.ProviderError as err:
        timings["generate"] = ms_since(t)
        record_failure(conn, task, prep, err)
        raise
    timings["generate"] = ms_since(t)
    completion = routed.completion
    response = GenerateResponse(
        request_id=task.request_id, tenant_id=task.tenant_id, mode=task.mode, text=completion.text,
        finish_reason=completion.finish_reason, tool_calls=completion.tool_calls,
        citations=citations_for(completion.text, prep.passages), model_alias=prep.alias,
        deployment=routed.deployment.name, provider=completion.provider, model=completion.model,
        offline=completion.provider == "offline", prompt=prep.prompt_ref, usage=completion.usage,
        cost_usd=routed.cost_usd, cache=CacheInfo(status="miss" if prep.use_cache else "bypass"),
        attempts=[a.as_dict() for a in routed.attempts], chunk_ids=[p.chunk_id for p in prep.passages],
        timings_ms=timings, wire=completion.wire)
    complete = completion.finish_reason == "stop" and not completion.tool_calls
    return _finish_or_defer(conn, s, task, response, prep.started, prep.store_args(complete, s), defer)


def time_left(task: GenerateTask, s: Settings, limit_s: float | None = None) -> float:
    """Seconds the model call may take: the generation deadline (`limit_s` when given), cut to the caller's
    when it has one (a workflow task must not keep calling, and paying, providers after the gateway stopped
    waiting)."""
    budget = s.generation_deadline_s if limit_s is None else limit_s
    if task.deadline_ms is not None:
        budget = min(budget, task.deadline_ms / 1000 - time.time())
    if budget <= 0:
        raise llm_errors.DeadlineExceeded("the caller's deadline passed before the model was called")
    return budget


def _finish_or_defer(conn: Any, s: Settings, task: GenerateTask, response: GenerateResponse, started: float,
                     store: Any, defer: list[Callable[[Any], None]] | None) -> GenerateResponse:
    if defer is None:
        return finish(conn, s, task, response, started, store=store)
    response.timings_ms["total"] = ms_since(started)

    def finish_later(later: Any) -> None:
        finish(later, s, task, response, started, store=store, keep_total=True)

    defer.append(finish_later)
    return response


def _chat_request(task: GenerateTask, prompt: Any, passages: list[ContextPassage]) -> ChatRequest:
    if task.mode == "rag":
        variables = {"question": _question(task),
                     "passages": [{"number": p.number, "title": p.title, "source_key": p.source_key, "text": p.text}
                                  for p in passages]}
        history = [m for m in task.messages[:-1] if m.role != "system"]
    else:
        variables, history = {}, list(task.messages)
    messages: list[Message] = prompt.render(variables, history)
    if task.guard is not None and task.guard.canary:
        from stratus.guard.rails import canary_message

        messages = canary_message(messages, task.guard.canary, caller=task.messages)
    params = {**(prompt.parameters or {}), **task.parameters.model_dump(exclude_none=True)}
    return ChatRequest(messages=messages, context=passages or None, **params)


def finish(conn: Any, s: Settings, task: GenerateTask, response: GenerateResponse, started: float,
           store: tuple[Any, str, list[ContextPassage], Any] | None = None, *,
           keep_total: bool = False) -> GenerateResponse:
    from stratus import cache

    t = time.perf_counter()
    with span("record", cache_store=store is not None), tenant_transaction(task.tenant_id, conn, relaxed=True):
        # A cache entry and a generation row are records, not money: a database crash may lose the last
        # few, in exchange for not waiting on the WAL flush (as admission and traces do).
        relax_commit(conn)
        if store is not None:
            scope, question, passages, embedding = store
            entry = cache.store(conn, scope, question, passages, [c.chunk_id for c in response.citations], embedding,
                                {"text": response.text, "finish_reason": response.finish_reason,
                                 "provider": response.provider, "model": response.model,
                                 "deployment": response.deployment},
                                ttl_s=s.cache_ttl_s, embedding_model=scope.embedding_model or s.embedding_model)
            response.cache.entry_id = entry
        response.timings_ms["record"] = ms_since(t)
        if not keep_total:
            response.timings_ms["total"] = ms_since(started)
        generation_rows.record_generation(conn, _row(task, response, status="ok"))
    return response


def record_failure(conn: Any, task: GenerateTask, prep: Prepared, err: llm_errors.ProviderError) -> None:
    timings = prep.timings
    timings["total"] = ms_since(prep.started)
    prompt = prep.prompt_ref
    with span("record", error_code=err.code), tenant_transaction(task.tenant_id, conn, relaxed=True):
        relax_commit(conn)
        generation_rows.record_generation(conn, {
            "tenant_id": task.tenant_id, "request_id": task.request_id, "mode": task.mode, "model_alias": prep.alias,
            "prompt_name": prompt.name, "prompt_version": prompt.version, "prompt_hash": prompt.hash,
            "status": "failed", "error_code": err.code, "cache_status": "miss", "cost_usd": 0,
            "latency_ms": timings["total"], "chunk_ids": [p.chunk_id for p in prep.passages], "cited_chunk_ids": [],
            "attempts": [a.as_dict() for a in err.attempts],
        })


def _row(task: GenerateTask, r: GenerateResponse, *, status: str) -> dict[str, Any]:
    return {
        "tenant_id": task.tenant_id, "request_id": task.request_id, "mode": task.mode, "model_alias": r.model_alias,
        "deployment": r.deployment, "provider": r.provider, "model": r.model, "prompt_name": r.prompt.name,
        "prompt_version": r.prompt.version, "prompt_hash": r.prompt.hash, "status": status, "error_code": None,
        "cache_status": r.cache.status, "cache_similarity": r.cache.similarity,
        "input_tokens": r.usage.input_tokens, "output_tokens": r.usage.output_tokens,
        "cached_input_tokens": r.usage.cached_input_tokens, "cost_usd": r.cost_usd,
        "latency_ms": r.timings_ms.get("total", 0.0), "chunk_ids": r.chunk_ids,
        "cited_chunk_ids": [c.chunk_id for c in r.citations], "attempts": r.attempts,
    }


def ms_since(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
