"""Guard task (Step Functions): {"stage": "input" | "context" | "output", "state": ...} -> the state the
workflow goes on with, carrying the rails' verdicts.

A policy decision is never an error: a blocked request comes back with `guard.blocked` set and the
state machine's Choice ends the run there. The detectors (the injection model, Presidio and spaCy, the
embedder) load on the first request that needs them, so the cold start pays only for the typed models.
"""

from __future__ import annotations

from typing import Any

from stratus.observability import observe
from stratus.query import guard_task

obs = observe("guard")  # a bad configuration fails at cold start, naming the variable


@obs.handler(correlation_id=lambda event: event["state"].get("request_id"))
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # InvalidInput (naming the field) propagates: the state machine's Catch routes it.
    state = event.get("state") if isinstance(event, dict) else None
    if isinstance(state, dict):
        obs.annotate(stage=event["stage"] if isinstance(event.get("stage"), str) else None,
                     tenant_id=state.get("tenant_id"), request_id=state.get("request_id"))
    result = guard_task(event)  # a span per rail: rail_injection, rail_pii, rail_context_injection...
    obs.annotate(blocked=(result.get("guard") or {}).get("blocked") is not None)
    return result
