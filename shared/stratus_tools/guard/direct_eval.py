"""Scoring the direct-injection detector on whole sources (training, `stratus eval guard`, the CI check).

Embeddings of a source's texts are cached on disk under .stratus/cache/minilm, keyed by the texts' hash:
the same text always gives the same vector, so the cache can only save time, never change a figure.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard.direct import EMBEDDING_MODEL, DirectModel, views
from stratus.guard.injection import binary_metrics
from stratus_tools.guard.injection_sources import ROOT, Source
from stratus_tools.guard.training import seeded_subset

CACHE = ROOT / ".stratus" / "cache" / "minilm"
LONG_WORDS = 100  # a source whose median text is longer embeds up to 13 views a text


def is_long(texts: Sequence[str]) -> bool:
    """Whether a source is one of long texts (its median text over LONG_WORDS words): such a source is timed
    and CI-sampled on fewer texts, each costing several window embeddings."""
    return bool(texts) and float(np.median([len(t.split()) for t in texts])) > LONG_WORDS


def embed_cached(texts: Sequence[str], cache: Path = CACHE) -> np.ndarray:
    """MiniLM vectors of `texts` (batched by length, so padding stays short), cached on disk."""
    from stratus.embeddings import get_embedder

    return cached_vectors(texts, cache / EMBEDDING_MODEL, lambda batch: get_embedder(EMBEDDING_MODEL).embed(batch),
                          dimensions=384)


def cached_vectors(texts: Sequence[str], folder: Path, embed: Callable[[list[str]], np.ndarray],
                   dimensions: int) -> np.ndarray:
    """`embed` over `texts` in batches of 32 of similar length, the result kept in `folder` under the texts'
    hash (vectors are a pure function of the texts), read back from there when present."""
    key = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
    path = folder / f"{key}.npy"
    if path.is_file():
        cached: np.ndarray = np.load(path)
        return cached
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), dimensions), dtype=np.float32)
    for start in range(0, len(order), 32):
        idx = order[start : start + 32]
        out[idx] = embed([texts[j] for j in idx])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{key}.{os.getpid()}.tmp.npy")  # whole or absent: another process may read it now
    np.save(tmp, out)
    tmp.replace(path)
    return out


def score_texts(model: DirectModel, texts: Sequence[str]) -> np.ndarray:
    """Scores as at run time (the highest over each text's views), with cached embeddings."""
    if not texts:
        return np.zeros(0)
    best = model.probabilities(texts, embed_cached(texts))  # the texts themselves: the source's cache entry
    owner: list[int] = []
    extra: list[str] = []
    for i, t in enumerate(texts):
        for _, v in views(t)[1:]:  # windows and decoded base64: a second cache entry
            owner.append(i)
            extra.append(v)
    if extra:
        np.maximum.at(best, np.asarray(owner, dtype=np.int64), model.probabilities(extra, embed_cached(extra)))
    return best


def source_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Recall on the source's attacks, FPR on its benign texts, precision where it has both."""
    m = binary_metrics(scores >= threshold, labels)
    n_pos, n_neg = int(labels.sum()), int(len(labels) - labels.sum())
    out: dict[str, Any] = {"n": len(labels), "attacks": n_pos, "benign": n_neg}
    if n_pos:
        out["recall"] = round(float(m["recall"]), 4)
    if n_neg:
        out["fpr"] = round(float(m["fpr"]), 4)
    if n_pos and n_neg:
        out["precision"] = round(float(m["precision"]), 4)
    return out


SAMPLE_SEED = 20


def seeded_sample(texts: list[str], labels: list[int], cap: int | None) -> tuple[list[str], list[int]]:
    """At most `cap` texts, a seeded sample in the source's order (the CI check's sample; None keeps all)."""
    if cap is None:
        return texts, labels
    kept = seeded_subset(list(zip(texts, labels, strict=True)), cap, seed=SAMPLE_SEED)
    return [t for t, _ in kept], [y for _, y in kept]


Scored = dict[str, tuple[np.ndarray, np.ndarray, str]]  # source name: (scores, labels, role)


def score_sources(score: Callable[[list[str]], np.ndarray], sources: Sequence[Source],
                  cap: int | dict[str, int] | None = None) -> Scored:
    """Each source's scores under `score`, its labels and its role. `cap` keeps a seeded sample of at most
    that many texts per source, or per source name (the CI check's short form)."""
    out: Scored = {}
    for src in sources:
        texts, labels = seeded_sample(*src.load(), cap.get(src.name) if isinstance(cap, dict) else cap)
        out[src.name] = (score(texts), np.asarray(labels, dtype=np.int8), src.role)
    return out


def sampled(scored: Scored, caps: dict[str, int]) -> Scored:
    """Sources already scored whole, cut to their CI samples: the same texts seeded_sample keeps (the
    sample depends only on a source's length), without loading or scoring them again."""
    out: Scored = {}
    for name, (s, y, role) in scored.items():
        keep = np.asarray(seeded_subset(range(len(y)), caps[name], seed=SAMPLE_SEED), dtype=np.int64)
        out[name] = (s[keep], y[keep], role)
    return out


def metrics_at(scored: Scored, threshold: float) -> dict[str, dict[str, Any]]:
    """Metrics per source at `threshold`, plus the report sources pooled."""
    results = {name: source_metrics(s, y, threshold) for name, (s, y, _) in scored.items()}
    report = [(s, y) for s, y, role in scored.values() if role == "report"]
    if report:
        results["all-report-sources"] = source_metrics(np.concatenate([s for s, _ in report]),
                                                       np.concatenate([y for _, y in report]), threshold)
    return results


CI_MARGIN = 0.011  # two texts of a 200-text sample (one text where a text weighs more); a real regression moves more


def regressions(measured: dict[str, dict[str, Any]], recorded: dict[str, dict[str, Any]],
                margin: float = CI_MARGIN) -> list[str]:
    """Where a CI sample's figures fell from those recorded: recall down or FPR up by more than `margin`, or
    one text where a rate's sample is small. Empty when every source holds."""
    if set(measured) != set(recorded):
        return [f"sources changed: measured {sorted(measured)}, recorded {sorted(recorded)}"]
    out: list[str] = []
    for name, m in measured.items():
        r = recorded[name]
        if m["n"] != r["n"]:
            out.append(f"{name}: {m['n']} texts, {r['n']} recorded")
            continue
        if "recall" in r and m["recall"] < r["recall"] - max(margin, 1.0 / r["attacks"] + 1e-9):
            out.append(f"{name}: recall {m['recall']} < recorded {r['recall']}")
        if "fpr" in r and m["fpr"] > r["fpr"] + max(margin, 1.0 / r["benign"] + 1e-9):
            out.append(f"{name}: fpr {m['fpr']} > recorded {r['fpr']}")
    return out


def evaluate(model: DirectModel, sources: Sequence[Source], threshold: float | None = None,
             cap: int | dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """Metrics per source at the model's threshold (or `threshold`), plus the pooled report sources.
    `cap` keeps a seeded sample of at most that many texts per source, or per source name (the CI check's
    short form)."""
    scored = score_sources(lambda texts: score_texts(model, texts), sources, cap)
    return metrics_at(scored, model.threshold if threshold is None else threshold)
