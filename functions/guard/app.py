"""Guard task (Step Functions): {"stage": "input" | "context" | "output", "state": ...} -> the state the
workflow goes on with, carrying the rails' verdicts.

A policy decision is never an error: a blocked request comes back with `guard.blocked` set and the
state machine's Choice ends the run there. The detectors (the injection model, Presidio and spaCy, the
embedder) load on the first request that needs them, so the cold start pays only for the typed models.
"""

from __future__ import annotations

from typing import Any

from stratus.guard.stages import run_stage
from stratus.observability import observe

obs = observe("guard")  # a bad configuration fails at cold start, naming the variable


@obs.handler(correlation_id=lambda event: event["state"].get("request_id"))
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # InvalidInput (naming the field) propagates: the state machine's Catch routes it.
    return run_stage(event)
