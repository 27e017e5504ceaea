"""The query pipeline: the steps a chat or RAG request goes through, in the one order the query workflow
(infra/statemachines/query.asl.json) runs them:

    guard_input -> retrieve -> guard_context -> generate -> guard_output      (STEPS)

retrieve and guard_context run for RAG requests only (RAG_ONLY); a request the input rails block stops
after guard_input. The order exists twice, here and in the ASL, and tests/unit/test_query_pipeline.py
keeps the two in step.

Who runs the steps:
- the workflow's task functions (functions/guard, retrieve, generate), one step per invocation:
  `guard_task` (a guard stage event), `retrieve`, `generate`;
- the gateway in-process: `run_in_process` (plain chat, not streamed: the whole pipeline) and
  `before_stream` + `open_stream` (streamed chat and RAG: the steps before the first byte, then a
  StreamedAnswer: the generation behind the output rails, which hold back each sentence until it has
  passed them).

In-process callers learn of each step through `Hooks`: `step(name, started)` when a step has finished
(the gateway's timings) and `verdict(guard)` after each guard step (the gateway raises the API's error on
a block). The model's alias is resolved once, by the caller, and handed down as `known`.

Layer: between the edge (gateway, the task functions) and the domain packages (guard, retrieval,
generation); it imports those, the database adapter and workflow_state, and nothing imports it but the
edge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from stratus.workflow_state import GenerateResponse, GenerateTask, QueryRequest

if TYPE_CHECKING:
    from stratus.config import Settings
    from stratus.generation.service import Known
    from stratus.generation.streaming import StreamedGeneration
    from stratus.guard.streaming import GuardedStream
    from stratus.llm.types import StreamChunk
    from stratus.retrieval.models import RetrieveRequest, RetrieveResponse

Request = TypeVar("Request", bound=QueryRequest)

STEPS = ("guard_input", "retrieve", "guard_context", "generate", "guard_output")
RAG_ONLY = ("retrieve", "guard_context")
GUARD_STEPS = ("guard_input", "guard_context", "guard_output")
# The name each step's duration has in the gateway's timings (and traces).
TIMING = {"guard_input": "guard_input", "retrieve": "retrieval", "guard_context": "guard_context",
          "generate": "generation", "guard_output": "guard_output"}


def steps_for(mode: str) -> tuple[str, ...]:
    """The steps a request of `mode` ("chat" | "rag") goes through, in order."""
    return STEPS if mode == "rag" else tuple(s for s in STEPS if s not in RAG_ONLY)


# --- the steps -------------------------------------------------------------------------------------------
def guard_input(request: Request, *, conn: Any = None) -> Request:
    """The input rails under the tenant's guard policy: the request redacted, `guard` set (`guard.blocked`
    when a rail refused it)."""
    from stratus.guard.policy import cached_policy
    from stratus.guard.stages import guard_input as check_input
    from stratus.spans import span

    if conn is None:
        from stratus.db.connection import get_connection

        conn = get_connection()
    with span("policy", tenant_id=request.tenant_id):
        policy = cached_policy(conn, request.tenant_id)
    return check_input(request, policy)


def retrieve(request: RetrieveRequest, *, conn: Any = None, dense_conn: Any = None,
             settings: Settings | None = None) -> RetrieveResponse:
    """The tenant's passages for the (unredacted) question (`dense_conn`: stratus.retrieval.service)."""
    from stratus.retrieval.service import retrieve as search

    return search(request, conn=conn, dense_conn=dense_conn, settings=settings)


def guard_context(task: GenerateTask) -> GenerateTask:
    """The context rails over the retrieved passages: flagged chunks dropped or fenced."""
    from stratus.guard.stages import guard_context as check_context

    return check_context(task)


def generate(task: GenerateTask, **options: Any) -> GenerateResponse:
    """One answer (stratus.generation.service.generate: settings, router, conn, defer, known)."""
    from stratus.generation.service import generate as answer

    return answer(task, **options)


def guard_output(task: GenerateTask, response: GenerateResponse, *, conn: Any = None) -> GenerateResponse:
    """The output rails over the answer; a blocked answer keeps no text."""
    from stratus.guard.stages import guard_output as check_output

    load_passage_vectors(task, conn=conn)
    return check_output(task, response)


def load_passage_vectors(task: GenerateTask, *, conn: Any = None) -> None:
    """Before groundedness: the retrieved chunks' sentence vectors stored at ingestion, so that only the
    answer's sentences are embedded (stratus.guard.passage_vectors)."""
    from stratus.errors import DatabaseUnavailable
    from stratus.guard.grounding import EMBEDDING_MODEL
    from stratus.guard.passage_vectors import prime
    from stratus.guard.rails import after_response, policy_of
    from stratus.spans import span
    from stratus.workflow_state import passages_from

    state = task.guard
    if state is None or state.blocked is not None or task.retrieval is None or not task.retrieval.hits:
        return
    policy = policy_of(state)
    if not policy.enabled("groundedness") or after_response(policy, "groundedness"):
        return  # not run, or run after the response (after_response_rails primes its own)
    with span("passage_vectors", tenant_id=task.tenant_id) as step:
        try:
            step.annotate(found=prime(conn, task.tenant_id, passages_from(task), EMBEDDING_MODEL))
        except DatabaseUnavailable as err:  # an optimisation only: groundedness embeds the passages instead
            logging.getLogger(__name__).warning("passage sentence vectors not loaded: %s", err)
            step.annotate(outcome="database_unavailable")


def after_response_rails(conn: Any, tenant_id: str, text: str, rails: list[str], *,
                         passages: list[Any] | None = None, chunk_ids: list[int] | None = None,
                         other_choices: Sequence[tuple[int, str]] = (), stop_at: float | None = None) -> list[Any]:
    """The output rails an answer's guard summary left for after the response (GuardSummary.deferred), run
    now: their verdicts, for the request's trace. `passages` are the prompt's when the caller has them (the
    gateway in-process); otherwise they are read back by `chunk_ids` (a workflow's answer carries only those),
    in the prompt's order, so [n] markers still point where they did. A chunk deleted since is left out.
    `other_choices` are (index, text) of the choices after the first (n > 1): each gets a verdict of its
    own, its index in `details["choice"]`, as the rails on the response path give them; a text repeated is
    scored once, and none is started after `stop_at` (epoch seconds: the invocation's deadline, less what
    the settlement and the trace write after this need), the span counting those skipped."""
    from stratus.db.chunks import fetch_chunks
    from stratus.db.connection import tenant_transaction
    from stratus.guard.grounding import EMBEDDING_MODEL
    from stratus.guard.passage_vectors import prime
    from stratus.guard.policy import cached_policy
    from stratus.guard.rails import groundedness_verdict
    from stratus.llm.types import ContextPassage
    from stratus.spans import span

    if "groundedness" not in rails:
        return []
    policy = cached_policy(conn, tenant_id)
    if passages is None:
        with tenant_transaction(tenant_id, conn) as tx:
            rows = fetch_chunks(tx, tenant_id, chunk_ids or [])
            passages = [ContextPassage(number=i, chunk_id=c, document_id=r["document_id"],
                                       document_version=r["document_version"], source_key=r["source_key"],
                                       title=r["title"], text=r["text"])
                        for i, c in enumerate(chunk_ids or [], start=1) if (r := rows.get(c)) is not None]
    if not passages or not policy.enabled("groundedness"):
        return []
    verdicts: list[Any] = []
    scored: dict[str, Any] = {}  # a provider often returns the same text for several choices
    answers = [(0, text), *other_choices]
    with span("rail_groundedness", stage="output", rail="groundedness", after_response=True) as step:
        prime(conn, tenant_id, passages, EMBEDDING_MODEL)
        for done, (index, answer) in enumerate(answers):
            if done and stop_at is not None and time.time() >= stop_at:
                step.annotate(skipped=len(answers) - done)
                break
            if answer not in scored:
                verdict = groundedness_verdict(answer, passages, policy)
                if verdict.action == "block":  # the policy changed since: the answer went out under `flag`
                    verdict = verdict.model_copy(update={"action": "flag"})
                scored[answer] = verdict
            verdict = scored[answer]
            if index:
                verdict = verdict.model_copy(update={"details": {**verdict.details, "choice": index}})
            verdicts.append(verdict)
        weakest = min(verdicts, key=lambda v: v.score)
        step.annotate(action=weakest.action, score=weakest.score, choices=len(verdicts))
    return verdicts


# --- the workflow's guard task -----------------------------------------------------------------------------
GUARD_STAGES = {"input": "guard_input", "context": "guard_context", "output": "guard_output"}


def guard_task(event: Any, *, conn: Any = None) -> dict[str, Any]:
    """The guard function's work: {"stage": "input" | "context" | "output", "state": <workflow state>} ->
    the state the workflow goes on with (the final response, for the output stage). Invalid input raises
    InvalidInput naming the field; a policy decision never raises."""
    from stratus.errors import InvalidInput
    from stratus.workflow_state import parse_model

    if not isinstance(event, dict) or event.get("stage") not in GUARD_STAGES:
        raise InvalidInput(f"stage must be one of {', '.join(GUARD_STAGES)}", field="stage")
    state = event.get("state")
    if not isinstance(state, dict):
        raise InvalidInput("state must be the workflow's state object", field="state")
    stage = event["stage"]
    if stage == "input":
        request = parse_model(QueryRequest, state, "guard input")
        return guard_input(request, conn=conn).model_dump(mode="json")
    if stage == "context":
        task = parse_model(GenerateTask, state, "guard context")
        return guard_context(task).model_dump(mode="json")
    fields = dict(state)
    response = parse_model(GenerateResponse, fields.pop("response", None), "guard output response")
    task = parse_model(GenerateTask, fields, "guard output")
    return guard_output(task, response, conn=conn).model_dump(mode="json")


# --- in-process --------------------------------------------------------------------------------------------
class Blocked(Exception):  # noqa: N818 - a verdict, not a fault
    """A rail refused the request before generation (its GuardSummary in `summary`)."""

    def __init__(self, summary: Any) -> None:
        super().__init__("a rail blocked the request")
        self.summary = summary


@dataclass(frozen=True)
class Hooks:
    """What an in-process caller hears: `step(name, started)` after each step (name as in TIMING,
    started a time.perf_counter() value), `verdict(guard)` after each guard step (raise to stop)."""

    step: Callable[[str, float], None] = lambda name, started: None
    verdict: Callable[[Any], None] = lambda guard: None


NO_HOOKS = Hooks()


def run_in_process(task: GenerateTask, *, conn: Any, settings: Settings, router: Any, known: Known,
                   defer: Any = None, hooks: Hooks = NO_HOOKS) -> GenerateResponse:
    """Every step of steps_for(task.mode), as the workflow runs them, in this process (the gateway's
    plain chat). A block raises from hooks.verdict; with hooks that do not raise, a request blocked on
    the way in raises Blocked (the workflow ends there too, generating nothing)."""
    task = before_stream(task, conn=conn, settings=settings, hooks=hooks)
    if task.guard is not None and task.guard.blocked is not None:
        raise Blocked(task.guard.summary())
    t = time.perf_counter()
    response = generate(task, settings=settings, router=router, conn=conn, defer=defer, known=known)
    hooks.step(TIMING["generate"], t)
    t = time.perf_counter()
    response = guard_output(task, response, conn=conn)
    hooks.step(TIMING["guard_output"], t)
    return response


def before_stream(task: GenerateTask, *, conn: Any, settings: Settings, hooks: Hooks = NO_HOOKS,
                  dense_lease: Callable[[], AbstractContextManager[Any]] | None = None) -> GenerateTask:
    """The steps before generation: guard_input, then (RAG) retrieve and guard_context. A block raises
    from hooks.verdict; otherwise the task comes back with `guard.blocked` set and no later step run.
    `dense_lease`: lends hybrid retrieval a second connection (or None) for its dense side, for the
    retrieval only (stratus.retrieval.service)."""
    t = time.perf_counter()
    task = guard_input(task, conn=conn)
    hooks.step(TIMING["guard_input"], t)
    hooks.verdict(task.guard)
    if task.mode != "rag" or (task.guard is not None and task.guard.blocked is not None):
        return task
    t = time.perf_counter()
    request = retrieval_request(task)
    with dense_lease() if dense_lease is not None and request.mode == "hybrid" else nullcontext() as dense_conn:
        result = retrieve(request, conn=conn, dense_conn=dense_conn, settings=settings)
    hooks.step(TIMING["retrieve"], t)
    task = task.model_copy(update={"retrieval": result})
    t = time.perf_counter()
    task = guard_context(task)
    hooks.step(TIMING["guard_context"], t)
    hooks.verdict(task.guard)
    return task


def retrieval_request(task: GenerateTask) -> RetrieveRequest:
    """The workflow's Retrieve parameters for a task: the unredacted question (retrieval runs inside the
    stack; only the provider sees placeholders) and the request's retrieval options."""
    from stratus.retrieval.models import parse_request

    opts = task.retrieval_options
    query = task.guard.search_query if task.guard is not None and task.guard.search_query else task.query
    return parse_request({"tenant_id": task.tenant_id, "query": query,
                          "k": opts.k, "mode": opts.mode, "rerank": opts.rerank,
                          "filters": opts.filters.model_dump(mode="json", exclude_none=True)})


def open_stream(task: GenerateTask, *, conn: Any, settings: Settings, router: Any, known: Known) -> StreamedAnswer:
    """generate and guard_output for a streamed answer (after before_stream): the generation, prepared on
    `conn` now (and recording on it too), behind the output rails."""
    from stratus.generation.streaming import stream_generate
    from stratus.guard.stages import system_prompt
    from stratus.guard.streaming import GuardedStream
    from stratus.workflow_state import passages_from

    generation = stream_generate(task, settings=settings, router=router, conn=conn, record_conn=conn, known=known)
    load_passage_vectors(task, conn=conn)
    guard = GuardedStream(task.guard, passages_from(task), system_prompt(task)) if task.guard else None
    return StreamedAnswer(generation, guard)


class StreamedAnswer:
    """A streamed answer as the client may see it: `start()` waits for the model's first chunk (so a
    failure before it raises before any byte is sent); iterating yields the chunks with each sentence
    held back until the output rails have passed it (a block raises Blocked); `response` is the whole
    answer, with the rails' summary, once the last chunk is out; `close()` stops the model's stream (and
    its billing) if it is still running."""

    def __init__(self, generation: StreamedGeneration, guard: GuardedStream | None) -> None:
        self.guard = guard
        self.response: GenerateResponse | None = None
        self._generation = generation
        self._chunks = iter(generation)
        self._first: StreamChunk | None = None

    def start(self) -> None:
        self._first = next(self._chunks, None)

    @property
    def first(self) -> StreamChunk | None:
        """The model's first chunk, once start() has waited for it (not yet past the rails)."""
        return self._first

    def __iter__(self) -> Iterator[StreamChunk]:
        if self._first is not None:
            yield self._checked(self._first)
        for chunk in self._chunks:
            yield self._checked(chunk)

    def close(self) -> None:
        self._chunks.close()

    def _checked(self, chunk: StreamChunk) -> StreamChunk:
        guard = self.guard
        if guard is not None:
            text = guard.feed(chunk.text) if chunk.text else chunk.text
            if chunk.finish_reason is not None:
                text += guard.finish(self._whole().text)
            chunk = chunk.model_copy(update={"text": text})
            if guard.blocked is not None:
                raise Blocked(guard.summary())
        if chunk.finish_reason is not None:
            response = self._whole()
            self.response = response if guard is None else response.model_copy(update={"guard": guard.summary()})
        return chunk

    def _whole(self) -> GenerateResponse:
        response = self._generation.response
        assert response is not None, "the generation sets its response before the last chunk"
        return response
