"""Multilingual injection detector (invoked synchronously by the gateway and the guard function, for tenants
whose injection rail uses `"detector": "multilingual"`): {"texts": [...], "threshold": t | null} -> each
text's language and, unless English, the head's verdict (stratus.guard.multilingual_remote holds the format).

The gate, USE and the head load at cold start, in the init phase (about 3 s, bench/results/cold_start.json),
not in the first invocation: the function has no other work. On Lambda that init runs once per published
version (SnapStart, template.yaml) and new environments are restored from its snapshot; `observe` registers
the after-restore hook that reseeds `random` (stratus.observability).
"""

from __future__ import annotations

from typing import Any

from stratus.guard.multilingual import get_multilingual_detector
from stratus.guard.multilingual_remote import answer
from stratus.observability import observe

obs = observe("guard_multilingual")  # a bad configuration fails at cold start, naming the variable
get_multilingual_detector().warm()


@obs.handler()
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # InvalidInput (naming the field) propagates: the caller maps a failed invocation to its fallback.
    result = answer(event)
    obs.annotate(texts=len(result["verdicts"]),
                 flagged=sum(1 for v in result["verdicts"] if v.get("flagged")))
    return result
