"""Fusing best-first (chunk id, score) lists from several retrievers into one ranking.

Two methods, chosen by `Settings.fusion`:

- `rrf`: weighted reciprocal rank fusion (Cormack et al., 2009),
  score(d) = sum over retrievers r of w_r / (k + rank_r(d)). Needs only ranks (1-based).
- `convex` (the default): a convex combination of each retriever's scores after min-max
  normalisation over its own candidate list, score(d) = sum_r w_r * (s_r(d) - min_r) / (max_r - min_r);
  a chunk a retriever did not return gets 0 from it. Unlike RRF it keeps *how much* better the top
  candidate of a retriever is than its tenth, so a confident lexical match (an identifier) and a
  confident dense match both survive, while a flat, uncertain list moves the fused ranking little.

Weights are relative (only their ratio matters); a retriever with no weight given counts 1. Why the defaults
are what they are, and on which labelled set they were chosen: docs/retrieval.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

FusionMethod = Literal["rrf", "convex"]


@dataclass
class Fused:
    chunk_id: int
    score: float
    ranks: dict[str, int] = field(default_factory=dict)  # retriever name -> 1-based rank
    scores: dict[str, float] = field(default_factory=dict)  # retriever name -> its own score


Rankings = Mapping[str, Sequence[tuple[int, float]]]


def _collect(rankings: Rankings) -> dict[int, Fused]:
    """Every candidate with its rank and score per retriever; a repeat counts once, at its best rank."""
    fused: dict[int, Fused] = {}
    for name, ranking in rankings.items():
        for rank, (cid, score) in enumerate(ranking, start=1):
            entry = fused.setdefault(cid, Fused(cid, 0.0))
            if name not in entry.ranks:
                entry.ranks[name] = rank
                entry.scores[name] = score
    return fused


def _weights(rankings: Rankings, weights: Mapping[str, float] | None) -> dict[str, float]:
    """A weight per retriever, 1 where none is given."""
    raw = {name: float((weights or {}).get(name, 1.0)) for name in rankings}
    if any(w < 0 for w in raw.values()):
        raise ValueError("fusion weights must be >= 0")
    return raw


def _ordered(fused: dict[int, Fused], limit: int | None) -> list[Fused]:
    # Ties broken by best single rank, then id, for stable output.
    ordered = sorted(fused.values(), key=lambda f: (-f.score, min(f.ranks.values()), f.chunk_id))
    return ordered[:limit] if limit is not None else ordered


def rrf(
    rankings: Rankings, k: int = 60, limit: int | None = None, weights: Mapping[str, float] | None = None
) -> list[Fused]:
    """Weighted reciprocal rank fusion; no weights (or equal ones of 1) give plain RRF."""
    if k < 1:
        raise ValueError("rrf k must be >= 1")
    w = _weights(rankings, weights)
    fused = _collect(rankings)
    for entry in fused.values():
        entry.score = sum(w[name] / (k + rank) for name, rank in entry.ranks.items())
    return _ordered(fused, limit)


def convex(rankings: Rankings, limit: int | None = None, weights: Mapping[str, float] | None = None) -> list[Fused]:
    """Weighted sum of min-max normalised scores (each retriever's own list sets its min and max)."""
    raw = _weights(rankings, weights)
    total_weight = sum(raw.values())
    w = {name: (v / total_weight if total_weight > 0 else 1.0 / len(raw)) for name, v in raw.items()}
    bounds: dict[str, tuple[float, float]] = {}
    for name, ranking in rankings.items():
        if ranking:
            values = [score for _, score in ranking]
            bounds[name] = (min(values), max(values))
    fused = _collect(rankings)
    for entry in fused.values():
        total = 0.0
        for name, score in entry.scores.items():
            low, high = bounds[name]
            total += w[name] * ((score - low) / (high - low) if high > low else 1.0)
        entry.score = total
    return _ordered(fused, limit)


def fuse(
    rankings: Rankings,
    method: FusionMethod,
    *,
    weights: Mapping[str, float] | None = None,
    rrf_k: int = 60,
    limit: int | None = None,
) -> list[Fused]:
    if method == "rrf":
        return rrf(rankings, k=rrf_k, limit=limit, weights=weights)
    return convex(rankings, limit=limit, weights=weights)
