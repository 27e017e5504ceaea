"""Generate task (Step Functions): the workflow state (request + retrieval) -> answer with citations, usage, cost.

Provider SDKs, the embedding runtime and the database driver's first connection load on first use, so
the cold start pays only for settings and the typed models.
"""

from __future__ import annotations

from typing import Any

from stratus.observability import observe
from stratus.query import generate
from stratus.workflow_state import GenerateTask, parse_model

obs = observe("generate")  # a bad configuration fails at cold start, naming the variable


@obs.handler(correlation_id=lambda event: event.get("request_id"))
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # Errors propagate with their class as the Lambda error type (InvalidInput, AllDeploymentsFailed...):
    # the state machine's Retry/Catch decide on them by name.
    task = parse_model(GenerateTask, event, "generate request")
    obs.annotate(tenant_id=task.tenant_id, request_id=task.request_id, mode=task.mode)
    response = generate(task)  # spans: prompt, cache_lookup, model_call > provider_attempt..., record
    obs.annotate(cache_hit=response.cache.status.startswith("hit"), provider=response.provider,
                 deployment=response.deployment)
    return response.model_dump(mode="json")
