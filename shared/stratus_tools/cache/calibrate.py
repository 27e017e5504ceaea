"""Choosing the semantic threshold from labelled question pairs (evals/cache/pairs.jsonl).

Each pair is two questions and whether one answer serves both. A semantic hit at threshold t is
"similarity >= t and equal semantic guards" (keys.semantic_guard); precision is the share of hits
that were right, recall the share of same-answer pairs that hit. A wrong cached answer is worse than
a miss, so the threshold is the lowest one that keeps precision at 1.0 on the set, plus a safety
margin (the set is small).

    python -m stratus_tools.cache.calibrate [pairs.jsonl]
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stratus.cache.keys import semantic_guard
from stratus.config import PROJECT_ROOT

PAIRS = PROJECT_ROOT / "evals" / "cache" / "pairs.jsonl"
THRESHOLDS = tuple(round(0.85 + 0.01 * i, 2) for i in range(14))  # 0.85 .. 0.98


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    kind: str


@dataclass(frozen=True)
class Point:
    threshold: float
    hits: int
    true_hits: int
    precision: float  # 1.0 when nothing hits: no wrong answer was served
    recall: float


def load_pairs(path: Path = PAIRS) -> list[Pair]:
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                raw = json.loads(line)
                pairs.append(Pair(a=raw["a"], b=raw["b"], same=bool(raw["same"]), kind=raw.get("kind", "")))
            except (ValueError, KeyError) as err:
                raise ValueError(f"{path}:{n}: bad pair ({err})") from None
    return pairs


def similarities(pairs: list[Pair], embedding_model: str = "all-MiniLM-L6-v2-int8") -> np.ndarray:
    from stratus.embeddings import get_embedder

    embedder = get_embedder(embedding_model)
    a = embedder.embed([p.a for p in pairs])
    b = embedder.embed([p.b for p in pairs])
    return np.einsum("ij,ij->i", a, b)  # rows are L2-normalised: the dot product is the cosine


def guards_agree(pairs: list[Pair]) -> np.ndarray:
    return np.array([semantic_guard(p.a) == semantic_guard(p.b) for p in pairs])


def curve(
    pairs: list[Pair], sims: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS, *, guarded: bool = True
) -> list[Point]:
    """Precision/recall of a semantic hit (similarity >= t, and equal guards unless `guarded=False`)."""
    same = np.array([p.same for p in pairs])
    allowed = guards_agree(pairs) if guarded else np.ones(len(pairs), dtype=bool)
    points = []
    for t in thresholds:
        hit = (sims >= t) & allowed
        hits, true_hits = int(hit.sum()), int((hit & same).sum())
        points.append(Point(t, hits, true_hits, true_hits / hits if hits else 1.0,
                            true_hits / int(same.sum()) if same.any() else 0.0))
    return points


def lowest_precise(points: list[Point]) -> float | None:
    """The lowest threshold from which precision stays 1.0 at every higher threshold."""
    best = None
    for p in sorted(points, key=lambda p: p.threshold, reverse=True):
        if p.precision < 1.0:
            break
        best = p.threshold
    return best


def report(path: Path = PAIRS) -> str:
    pairs = load_pairs(path)
    sims = similarities(pairs)
    bare, points = curve(pairs, sims, guarded=False), curve(pairs, sims)
    lines = ["| threshold | cosine only: precision | recall | with the guard: hits | right | precision | recall |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {b.threshold:.2f} | {b.precision:.3f} | {b.recall:.3f} | {p.hits} | {p.true_hits}"
              f" | {p.precision:.3f} | {p.recall:.3f} |" for b, p in zip(bare, points, strict=True)]
    agree = guards_agree(pairs)
    neg = sorted(((float(s), p) for s, p, ok in zip(sims, pairs, agree, strict=True) if not p.same and ok),
                 key=lambda x: -x[0])
    pos = sorted(((float(s), p) for s, p in zip(sims, pairs, strict=True) if p.same), key=lambda x: x[0])
    lines += ["", f"{len(pairs)} pairs ({sum(p.same for p in pairs)} same answer);"
              f" lowest threshold with precision 1.0 from there up: {lowest_precise(points)}",
              "", "most similar different-answer pairs the guard lets through:"]
    lines += [f"  {s:.3f} [{p.kind}] {p.a!r} / {p.b!r}" for s, p in neg[:6]]
    lines += ["least similar same-answer pairs:"]
    lines += [f"  {s:.3f} {p.a!r} / {p.b!r}" for s, p in pos[:6]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(Path(sys.argv[1]) if len(sys.argv) > 1 else PAIRS))
