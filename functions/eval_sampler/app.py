"""Eval sampler (EventBridge schedule): score the requests sampled since the last run, store the scores
and per-prompt aggregates, flag regressions and input drift, and emit the figures as CloudWatch metrics
(embedded metric format in the function's log).

The embedder and the guard's scorers load on the first run, not at cold start.
"""

from __future__ import annotations

from typing import Any

from stratus.evals.sampler import run_sampler
from stratus.observability import observe

obs = observe("eval_sampler")  # a bad configuration fails at cold start, naming the variable


@obs.handler(correlation_id=lambda event: event.get("id"))  # the EventBridge event's id
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    from stratus.evals.metrics import emit

    # Stop before the function's timeout; the next scheduled run resumes where this one stopped.
    time_left = (lambda: context.get_remaining_time_in_millis() / 1000) if context is not None else None
    result = run_sampler(time_left=time_left)
    if obs.emit_metrics:  # on in the template; off locally, where stdout belongs to the commands
        emit(result.metrics, service="eval_sampler")
    return {"run_id": result.run_id, "window_from": result.window_from.isoformat(),
            "window_to": result.window_to.isoformat(), **result.summary()}
