"""Retrieve task (Step Functions): {"tenant_id", "query", "k", "mode", "filters"} -> hits with scores.

Cold start stays light: the embedding runtime loads on the first query, and no AWS SDK is imported.
"""

from __future__ import annotations

from typing import Any

from stratus.observability import observe
from stratus.query import retrieve
from stratus.retrieval.models import parse_request

obs = observe("retrieve")  # a bad configuration fails at cold start, naming the variable


@obs.handler(correlation_id=lambda event: event.get("request_id"))
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # InvalidInput (naming the field) propagates: the state machine's Catch routes it.
    # The workflow's trace context is the handler's (Observability.handler continues it), not retrieval's.
    request = parse_request({k: v for k, v in event.items() if k != "trace_context"} if isinstance(event, dict)
                            else event)
    obs.annotate(tenant_id=request.tenant_id, request_id=request.request_id, mode=request.mode)
    response = retrieve(request)  # a span per stage: embed_query, filters, lexical, dense, fusion...
    obs.annotate(hits=len(response.hits))
    return response.model_dump(mode="json")
