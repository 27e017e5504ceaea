"""Reciprocal rank fusion (Cormack et al., 2009): score(d) = sum over rankings of 1 / (k + rank(d)).

RRF needs no score calibration between BM25 and cosine similarity, only ranks (1-based).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class Fused:
    chunk_id: int
    score: float
    ranks: dict[str, int] = field(default_factory=dict)  # retriever name -> 1-based rank
    scores: dict[str, float] = field(default_factory=dict)  # retriever name -> its own score


def rrf(rankings: Mapping[str, Sequence[tuple[int, float]]], k: int = 60, limit: int | None = None) -> list[Fused]:
    """Fuse best-first (id, score) lists; ties broken by best single rank, then id, for stable output."""
    if k < 1:
        raise ValueError("rrf k must be >= 1")
    fused: dict[int, Fused] = {}
    for name, ranking in rankings.items():
        for rank, (cid, score) in enumerate(ranking, start=1):
            entry = fused.setdefault(cid, Fused(cid, 0.0))
            if name in entry.ranks:
                continue  # a retriever listing a chunk twice counts once, at its best rank
            entry.score += 1.0 / (k + rank)
            entry.ranks[name] = rank
            entry.scores[name] = score
    ordered = sorted(fused.values(), key=lambda f: (-f.score, min(f.ranks.values()), f.chunk_id))
    return ordered[:limit] if limit is not None else ordered
