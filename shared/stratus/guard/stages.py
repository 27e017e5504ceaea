"""The guard stages over the query workflow's typed state: what the guard function runs for GuardInput,
GuardContext and GuardOutput, and what the gateway runs in-process for plain and streamed chat (both
through stratus.query, which owns the order and the guard function's event).

- input: QueryRequest -> the same request with its messages and query redacted and `guard` set
  (`guard.blocked` when a rail refused it: the workflow stops there);
- context: GenerateTask with `retrieval` -> the same task with flagged chunks dropped or fenced;
- output: (GenerateTask, GenerateResponse) -> the response as the caller may see it, with `guard` set
  to the verdicts of the whole request. A blocked answer keeps no text.
"""

from __future__ import annotations

from typing import Any, TypeVar

from stratus.guard import rails
from stratus.guard.policy import GuardPolicy
from stratus.workflow_state import GenerateResponse, GenerateTask, GuardState, GuardSummary, QueryRequest

_Request = TypeVar("_Request", bound=QueryRequest)


def guard_input(request: _Request, policy: GuardPolicy) -> _Request:
    state = rails.start(policy, search_query=request.query)
    messages, query, state = rails.check_input(request.messages, request.query, state)
    return request.model_copy(update={"messages": messages, "query": query, "guard": state})


def guard_context(task: GenerateTask) -> GenerateTask:
    if task.guard is None or task.retrieval is None:
        return task
    hits, state = rails.check_context(task.retrieval.hits, task.guard)
    messages, query, state = rails.unredact_known(task.messages, task.query, state, [h.text for h in hits])
    retrieval = task.retrieval.model_copy(update={"hits": hits})
    return task.model_copy(update={"retrieval": retrieval, "guard": state, "messages": messages, "query": query})


def guard_output(task: GenerateTask, response: GenerateResponse) -> GenerateResponse:
    from stratus.citations import citations_for
    from stratus.workflow_state import passages_from

    state = task.guard
    if state is None:
        return response
    if state.blocked is not None:
        return blocked_response(response, state.summary())
    passages = passages_from(task)
    text, state = rails.check_output(response.text, state, passages=passages, system_prompt=system_prompt(task))
    if state.blocked is not None:
        return blocked_response(response, state.summary())
    wire = dict(response.wire)
    if text != response.text:
        # The provider's logprobs describe the text before the rails rewrote it: they would leak it.
        wire.pop("choice", None)
    if wire.get("choices"):  # n > 1: every other choice passes the same rails; one blocked blocks the answer
        choices, state = _other_choices(wire["choices"], state, passages, system_prompt(task))
        if state.blocked is not None:
            return blocked_response(response, state.summary())
        wire["choices"] = choices
    update: dict[str, Any] = {"text": text, "guard": state.summary(), "wire": wire}
    if text != response.text:
        update["citations"] = citations_for(text, passages)
    return response.model_copy(update=update)


def _other_choices(choices: list[dict[str, Any]], state: GuardState, passages: Any,
                   system: str | None) -> tuple[list[dict[str, Any]], GuardState]:
    """The choices after the first (Completion.wire["choices"]) through the output rails: a rewritten text
    replaces the provider's and loses its logprobs."""
    out = []
    for position, choice in enumerate(choices, start=1):
        index = choice_index(choice, position)
        message = choice.get("message") or {}
        text = message.get("content")
        if isinstance(text, str) and text:
            before = len(state.verdicts)
            checked, state = rails.check_output(text, state, passages=passages, system_prompt=system)
            state = _of_choice(state, before, index)
            if state.blocked is not None:
                return [], state
            if checked != text:
                choice = choice | {"message": message | {"content": checked}, "logprobs": None}
        out.append(choice)
    return out, state


def choice_index(choice: dict[str, Any], position: int) -> int:
    """A choice's number in verdicts: the provider's `index`, else its place (the first choice is 0)."""
    index = choice.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else position


def _of_choice(state: GuardState, since: int, index: int) -> GuardState:
    """The verdicts recorded from `since` on name the choice they are about (`details["choice"]`)."""
    new = state.verdicts[since:]
    tagged = [v.model_copy(update={"details": {**v.details, "choice": index}}) for v in new]
    update: dict[str, Any] = {"verdicts": [*state.verdicts[:since], *tagged]}
    if state.blocked is not None and state.blocked in new:
        update["blocked"] = tagged[new.index(state.blocked)]
    return state.model_copy(update=update)


def blocked_response(response: GenerateResponse, summary: GuardSummary) -> GenerateResponse:
    """What a blocked answer leaves: no text, no tool calls, the verdicts (usage and cost stay: the
    provider was paid)."""
    return response.model_copy(update={"text": "", "tool_calls": [], "citations": [], "wire": {},
                                       "finish_reason": "content_filter", "guard": summary})


def system_prompt(task: GenerateTask) -> str | None:
    """The caller's own system prompt in plain chat (a RAG prompt ignores it and carries the canary)."""
    if task.mode == "rag":
        return None
    texts = [m.text() for m in task.messages if m.role in ("system", "developer")]
    return "\n".join(texts) or None
