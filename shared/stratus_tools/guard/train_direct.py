"""Train the direct-injection detector's head (stratus.guard.direct: injection-v6, which v7 builds on) on whole sources.

    python -m stratus_tools.guard.train_direct [--out shared/stratus/guard/models/injection-v6]

- Fit: the `train` sources of stratus_tools.guard.injection_sources (S-Labs train, neuralchemy train
  without its HackAPrompt rows, every turn of chatterbot chat of some topics and languages, and benign text
  that is not chat: stdlib code, documentation, support tickets, agent tasks). Each (source, label) group
  weighs the same in the loss, so S-Labs' 11k rows do not decide alone what "benign" is. A benign text is
  also trained on through its other views (a long one's windows, decoded base64), as the detector reads it.
- Choose: l2, the class weighting and the threshold on the `threshold` sources only (S-Labs validation,
  HackAPrompt, chatterbot English chat of other topics, held-out stdlib code and documentation): the
  threshold is the lowest whose false-positive rate is at most the source's `max_fpr` on every benign
  threshold source (0.02 on chat and prompts, 0.05 on code and documentation: the issue's two targets); l2
  and the weighting are those with the best recall there.
- Compare: the previous artifact (`--previous`) under the same rule on the same threshold sources, so the
  decision to adopt the new one rests on threshold sources only (recorded in the JSON, never automatic).
- Report: the `report` sources, never seen before this step; figures go into the artifact's JSON.
Deterministic: full-batch Adam from zero weights; embeddings are a pure function of the text.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard.direct import EMBEDDING_MODEL, MODEL_DIR, DirectModel, views
from stratus.guard.injection import DEFAULT_MODEL as NGRAM_STEM
from stratus.guard.injection import InjectionModel
from stratus_tools.guard.direct_eval import embed_cached, evaluate, is_long, score_texts
from stratus_tools.guard.injection_sources import CHAT_FPR, Source, by_role
from stratus_tools.guard.training import DOC_SOURCES, package_documents, threshold_at_fpr

TARGET_FPR = CHAT_FPR  # a threshold source's default limit (the benign-chat target); see Source.max_fpr
# Texts per report source in the CI regression check (tests/integration): a seeded sample of CI_CAP, or of
# CI_CAP_LONG for a source of long texts (direct_eval.is_long: each costs several window embeddings).
CI_CAP, CI_CAP_LONG = 200, 60
L2_GRID = (1e-5, 3e-5, 1e-4, 3e-4)
# A pair: the artifact this recipe writes and the one it was trained to replace (compared on the threshold
# sources and recorded in it, so retraining reproduces it byte for byte). A next version moves both.
OUT = MODEL_DIR / "injection-v6"
PREVIOUS = MODEL_DIR / "injection-v5"


def group_weights(y: np.ndarray, groups: np.ndarray, class_balanced: bool) -> np.ndarray:
    """Row weights summing to 1 with equal total weight per group; class_balanced: attacks and benign texts
    weigh half each, shared equally by their groups (with many benign sources, equal groups alone leave the
    attacks a small share)."""
    weights = np.zeros(len(y))
    uniq = np.unique(groups)
    for g in uniq:
        mask = groups == g
        if class_balanced:
            same_label = len(np.unique(groups[y == y[mask][0]]))
            weights[mask] = 0.5 / (mask.sum() * same_label)
        else:
            weights[mask] = 1.0 / (mask.sum() * len(uniq))
    return weights


def fit(x: np.ndarray, y: np.ndarray, groups: np.ndarray, l2: float, iterations: int = 600,
        lr: float = 0.05, class_balanced: bool = False) -> tuple[np.ndarray, float]:
    """Logistic regression with equal total weight per group (group_weights), full-batch Adam from zero
    (deterministic)."""
    sample_w = group_weights(y, groups, class_balanced)
    x64 = x.astype(np.float64)
    w, b = np.zeros(x.shape[1]), 0.0
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    for t in range(1, iterations + 1):
        p = 1.0 / (1.0 + np.exp(-(x64 @ w + b)))
        g = (p - y) * sample_w
        grad_w, grad_b = x64.T @ g + l2 * w, g.sum()
        m_w = 0.9 * m_w + 0.1 * grad_w
        v_w = 0.999 * v_w + 0.001 * grad_w**2
        m_b = 0.9 * m_b + 0.1 * grad_b
        v_b = 0.999 * v_b + 0.001 * grad_b**2
        step = lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        w -= step * m_w / (np.sqrt(v_w) + 1e-8)
        b -= step * m_b / (np.sqrt(v_b) + 1e-8)
    return w.astype(np.float32), float(b)


def binding_threshold(scores: dict[str, tuple[np.ndarray, np.ndarray]],
                      max_fpr: float | dict[str, float]) -> tuple[float, str]:
    """The lowest threshold keeping the FPR at or under max_fpr (one limit, or one per source name, TARGET_FPR
    for a source not named) on every source with benign rows, and the source that bound it."""
    def limit(name: str) -> float:
        return max_fpr.get(name, TARGET_FPR) if isinstance(max_fpr, dict) else float(max_fpr)
    return max((threshold_at_fpr(s, y, limit(name)), name) for name, (s, y) in scores.items() if (y == 0).any())


def choose_threshold(scores: dict[str, tuple[np.ndarray, np.ndarray]], max_fpr: float | dict[str, float]) -> float:
    """binding_threshold's threshold alone (our rule on the threshold sources)."""
    return binding_threshold(scores, max_fpr)[0]


def judged_at(scores: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float) -> dict[str, Any]:
    """At `threshold`: the pooled attack recall (unrounded) and each benign source's FPR."""
    pos = np.concatenate([s[y == 1] for s, y in scores.values()])
    fpr = {name: round(float((s[y == 0] >= threshold).mean()), 4) for name, (s, y) in scores.items()
           if (y == 0).any()}
    return {"recall": float((pos >= threshold).mean()), "fpr": fpr}


def fpr_limits(sources: list[Source]) -> dict[str, float]:
    return {s.name: s.max_fpr for s in sources}


def on_threshold_sources(model: DirectModel, held: dict[str, tuple[list[str], list[int]]],
                         limits: dict[str, float] | None = None) -> dict[str, Any]:
    """A model judged on the threshold sources alone: at the threshold our rule picks from its scores there
    (each source's FPR limit, `limits`, else TARGET_FPR), the pooled attack recall and each benign source's
    FPR (what adopting a new artifact is decided on). `recall` stays unrounded (the grid compares it); the
    record rounds it."""
    scored = {name: (score_texts(model, t), np.asarray(y, dtype=np.int8)) for name, (t, y) in held.items()}
    thr = choose_threshold(scored, limits or {})
    return {"threshold": thr} | judged_at(scored, thr)


def texts_digest(texts: list[str]) -> dict[str, Any]:
    """How many texts a source gave and their sha256 (what a retraining must find again)."""
    return {"texts": len(texts), "sha256": hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()}


def _record(judged: dict[str, Any]) -> dict[str, Any]:
    return judged | {"recall": round(judged["recall"], 4)}


def train(out: Path, ngram_feature: bool = True, previous: Path | None = PREVIOUS) -> dict[str, Any]:
    started = time.perf_counter()
    ngram = InjectionModel.load(NGRAM_STEM)
    probe = DirectModel(weights=np.zeros(385, np.float32), bias=0.0, threshold=0.5, ngram=ngram)
    labels: list[int] = []
    groups: list[str] = []
    blocks: list[np.ndarray] = []
    digests: dict[str, dict[str, Any]] = {}
    for src in by_role("train"):
        t, y = src.load()
        digests[src.name] = texts_digest(t)
        labels += y
        groups += [f"{src.name}:{label}" for label in y]
        blocks.append(probe.features(t, embed_cached(t)))  # per source: the embedding cache's unit
        # A benign text's other views (windows of a long one, decoded base64 runs), in its group: at run time
        # each view is scored on its own and the highest wins.
        pieces = [v for text, label in zip(t, y, strict=True) if label == 0 for _, v in views(text)[1:]]
        if pieces:
            labels += [0] * len(pieces)
            groups += [f"{src.name}:0"] * len(pieces)
            blocks.append(probe.features(pieces, embed_cached(pieces)))
    x = np.vstack(blocks)
    if not ngram_feature:
        x[:, -1] = 0.0
    y_arr, g_arr = np.asarray(labels, dtype=np.float64), np.asarray(groups)
    held = {s.name: s.load() for s in by_role("threshold")}
    digests |= {name: texts_digest(t) for name, (t, _) in held.items()}
    limits = fpr_limits(by_role("threshold"))
    best: tuple[dict[str, Any], float, bool, DirectModel] | None = None
    for l2, balanced in [(l2, balanced) for balanced in (False, True) for l2 in L2_GRID]:
        w, b = fit(x, y_arr, g_arr, l2, class_balanced=balanced)
        model = DirectModel(weights=w, bias=b, threshold=0.5, ngram=ngram)
        judged = on_threshold_sources(model, held, limits)
        model.threshold = judged["threshold"]
        print(f"l2={l2:g} class_balanced={balanced}: threshold {model.threshold:.4f}, "
              f"threshold-source recall {judged['recall']:.4f}", flush=True)
        if best is None or judged["recall"] > best[0]["recall"]:
            best = (judged, l2, balanced, model)
    assert best is not None
    judged, l2, balanced, model = best
    metadata: dict[str, Any] = {
        "model": out.name,
        "embedding_model": EMBEDDING_MODEL,
        "dimensions": 384,
        "ngram_model": NGRAM_STEM.name,  # loaded even when its feature is off (weight 0)
        "ngram_feature": ngram_feature,
        "l2": l2,
        "class_balanced": balanced,
        "threshold": model.threshold,
        "threshold_rule": "lowest threshold with FPR <= the source's limit on every benign threshold source",
        "threshold_fpr_limits": {n: v for n, v in limits.items() if (np.asarray(held[n][1]) == 0).any()},
        "sources": {role: [{"name": s.name, "origin": s.origin, "licence": s.licence} for s in by_role(role)]
                    for role in ("train", "threshold", "report")},
        "train_rows": len(labels),  # texts, and the other views of the benign ones
        # What retraining must reproduce: some sources are read from this interpreter's stdlib and the
        # installed packages' READMEs, so a different Python or venv shows up here first.
        "python": ".".join(map(str, sys.version_info[:3])),
        "source_texts": digests,
        "docs_skipped_packages": package_documents(DOC_SOURCES)[1],
    }
    metadata["threshold_sources"] = {out.name: _record(judged)}  # the grid already judged the kept head
    if previous is not None and previous.with_suffix(".npz").is_file():
        metadata["threshold_sources"][previous.name] = _record(
            on_threshold_sources(DirectModel.load(previous), held, limits))
    return measure_and_save(model, out, metadata, started)


def measure_and_save(model: DirectModel, out: Path, metadata: dict[str, Any], started: float) -> dict[str, Any]:
    """A chosen artifact's figures on every threshold and report source, and on the CI sample of each report
    source (what the CI regression test recomputes), saved with it and printed."""
    metadata["metrics"] = evaluate(model, by_role("threshold") + by_role("report"))
    metadata["ci_sample"] = ci_sample(model)
    model.save(out, metadata)
    print(f"wrote {out} in {time.perf_counter() - started:.1f}s")
    for name, m in metadata["metrics"].items():
        print(f"{name:>26}: " + " ".join(f"{k} {v}" for k, v in m.items()))
    return metadata


def ci_caps(sources: list[Source]) -> dict[str, int]:
    """Each report source's CI sample size: CI_CAP, or CI_CAP_LONG for a source of long texts."""
    return {s.name: CI_CAP_LONG if is_long(s.load()[0]) else CI_CAP for s in sources}


def ci_sample(model: DirectModel) -> dict[str, Any]:
    """The report figures on each source's seeded CI sample: what the CI regression test recomputes."""
    caps = ci_caps(by_role("report"))
    return {"caps": caps, "metrics": evaluate(model, by_role("report"), cap=caps)}


def remeasure(stem: Path) -> dict[str, Any]:
    """An existing artifact's figures recomputed on today's threshold and report sources (its weights and
    threshold untouched): what `stratus eval guard` and the CI check compare against after sources change."""
    model = DirectModel.load(stem)
    metadata = dict(model.metadata)
    metadata["metrics"] = evaluate(model, by_role("threshold") + by_role("report"))
    metadata["ci_sample"] = ci_sample(model)
    metadata["remeasured_sources"] = {role: [s.name for s in by_role(role)] for role in ("threshold", "report")}
    model.save(stem, metadata)
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--previous", type=Path, default=PREVIOUS, help="artifact compared on the threshold sources")
    parser.add_argument("--no-ngram-feature", action="store_true", help="the embedding head alone (measured)")
    parser.add_argument("--remeasure", type=Path, help="recompute an existing artifact's figures; no training")
    args = parser.parse_args(argv)
    if args.remeasure:
        remeasure(args.remeasure)
        return 0
    train(args.out, ngram_feature=not args.no_ngram_feature, previous=args.previous)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
