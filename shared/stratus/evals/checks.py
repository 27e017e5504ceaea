"""The deterministic checks of online evaluation, one sampled request at a time. Each returns a Score:
a value in 0..1 and whether it passes, or an error when it could not be computed (never a zero).

- citations_retrieved: every chunk the answer cites was among the chunks it was generated from;
- groundedness: the guard's groundedness scorer over the passages (those still stored);
- output_pii: the answer the caller saw carried no PII that was not the caller's own or the documents'
  (checked on the unredacted answer when the sample was taken: the stored text is redacted);
- refusal_consistent: a RAG answer that declines cites nothing, and one that answers cites something;
- latency / cost: under the targets in the settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Score:
    metric: str
    score: float | None
    passed: bool | None
    scorer: str = "check"
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def run_checks(sample: dict[str, Any], passages: list[Any], settings: Any) -> list[Score]:
    from stratus.guard.rails import declines

    out: list[Score] = []
    chunk_ids, cited = set(sample["chunk_ids"] or []), set(sample["cited_chunk_ids"] or [])
    rag = sample["mode"] == "rag"
    if rag:
        stray = sorted(cited - chunk_ids)
        out.append(Score("citations_retrieved", 0.0 if stray else 1.0, not stray,
                         details={"not_retrieved": stray} if stray else {}))
        declined = declines(sample["answer"])
        consistent = (not cited) if declined else bool(cited)
        out.append(Score("refusal_consistent", 1.0 if consistent else 0.0, consistent,
                         details={"declined": declined, "cited": len(cited)}))
        out.append(_groundedness(sample["answer"], declined, passages, len(chunk_ids)))
    facts = sample.get("facts") or {}
    if "answer_pii" in facts:
        leaked = facts["answer_pii"]
        out.append(Score("output_pii", 0.0 if leaked else 1.0, not leaked,
                         details={"entities": leaked} if leaked else {}))
    latency, cost = float(sample["latency_ms"] or 0), float(sample["cost_usd"] or 0)
    out.append(_target("latency", latency, settings.eval_latency_target_ms, "ms"))
    out.append(_target("cost", cost, settings.eval_cost_target_usd, "usd"))
    return out


def _target(metric: str, value: float, target: float, unit: str) -> Score:
    ok = value <= target
    return Score(metric, 1.0 if ok else 0.0, ok, details={f"{metric}_{unit}": value, f"target_{unit}": target})


def _groundedness(answer: str, declined: bool, passages: list[Any], expected: int) -> Score:
    from stratus.guard.grounding import groundedness

    if declined:
        return Score("groundedness", 1.0, True, details={"declined": True})
    if expected and not passages:
        return Score("groundedness", None, None, error="the passages are no longer stored (document replaced)")
    g = groundedness(answer, passages)
    return Score("groundedness", round(g.score, 4), g.supported,
                 details={"mean": round(g.mean, 4), "unsupported": [s.text[:160] for s in g.unsupported][:3]})
