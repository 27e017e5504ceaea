"""Train the toxicity classifier and write shared/stratus/guard/models/toxicity-v1.{npz,json}.

    .venv/bin/python scripts/train_toxicity.py            # reproduces the committed artifact

Data: no package on the registry ships English labelled toxicity data (those that mention toxicity ship
a pre-trained model, a word list, or a downloader), so the model learns from a small set written by us,
data/guard/toxicity_train.jsonl. A seeded stratified 25% of it is held out as the VALIDATION split, which
alone picks the regularisation strength and the threshold. The test set, evals/guard/toxicity_cases.jsonl,
was written separately (no shared sentences, different wording of the same hard-negative themes) and is
scored once at the end; so is evals/guard/benign_chat.jsonl (all benign: its false-positive rate).

Model: hashed word + char n-gram TF-IDF (stratus.guard.features) and class-balanced logistic regression
(stratus_tools.guard.training), the injection rail's model family; scored at run time by stratus.guard.toxicity.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from stratus.guard import features as F
from stratus.guard.injection import BENIGN_CHAT, InjectionModel, binary_metrics, load_hard_set
from stratus.guard.toxicity import CASES, DEFAULT_MODEL, TRAIN_SET, ToxicityClassifier
from stratus_tools.guard.training import (
    files_sha256,
    fit_best_l2,
    load_labelled_jsonl,
    save_and_report,
    stratified_split,
)


def scores_of(model: InjectionModel, texts: list[str]) -> np.ndarray:
    """Scored exactly as at run time (whole text and sentences), so the threshold fits what runs."""
    return np.array([s.score for s in ToxicityClassifier.wrapping(model).assess(texts)], dtype=np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--buckets", type=int, default=2**17, help="hashed feature buckets")
    ap.add_argument("--l2", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3], help="grid, chosen on validation")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--validation", type=float, default=0.25, help="share of the training file held out")
    ap.add_argument("--seed", type=int, default=20240605)
    ap.add_argument("--target-fpr", type=float, default=0.05,
                    help="FPR allowed on validation when picking the threshold")
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL)
    args = ap.parse_args()
    started = time.perf_counter()

    texts, labels = load_labelled_jsonl(TRAIN_SET, "toxic")
    tr_idx, va_idx = stratified_split(labels, args.validation, args.seed)
    tr_x, tr_y = [texts[i] for i in tr_idx], labels[tr_idx]
    va_x, va_y = [texts[i] for i in va_idx], labels[va_idx]

    counts_tr = F.counts(tr_x, args.buckets)
    idf = F.document_frequency_idf(counts_tr)
    x_tr = F.tfidf(counts_tr, idf)

    # Ties on recall go to the stronger regularisation.
    fitted = fit_best_l2(x_tr, tr_y, args.l2, args.iterations, args.lr, val_y=va_y, target_fpr=args.target_fpr,
                         val_scores=lambda w, b: scores_of(InjectionModel(weights=w, bias=b, idf=idf,
                                                                          threshold=1.0), va_x),
                         ties_to_larger_l2=True)
    val_metrics, l2, w, b, threshold = fitted.metrics, fitted.l2, fitted.weights, fitted.bias, fitted.threshold

    model = InjectionModel(weights=w, bias=b, idf=idf, threshold=threshold, metadata={})
    case_x, case_y = load_labelled_jsonl(CASES, "toxic")
    chat_x, chat_y = load_hard_set(BENIGN_CHAT)
    metadata = {
        "name": args.out.name,
        "kind": "hashed word+char n-gram TF-IDF, logistic regression; max over whole text and sentences",
        "threshold": threshold,
        "threshold_rule": f"lowest threshold with validation FPR <= {args.target_fpr}",
        "data": {
            "source": "data/guard/toxicity_train.jsonl (written for this project; no registry package ships "
                      "English labelled toxicity data)",
            "sha256": files_sha256([TRAIN_SET]),
            "rows": {"train": len(tr_x), "validation": len(va_x), "toxic": int(labels.sum())},
            "test": {"path": "evals/guard/toxicity_cases.jsonl", "sha256": files_sha256([CASES]),
                     "rows": len(case_x)},
        },
        "params": {
            "buckets": args.buckets, "char_ngrams": [3, 4, 5], "word_ngrams": [1, 2], "l2_grid": args.l2,
            "l2": l2, "iterations": args.iterations, "lr": args.lr, "target_fpr": args.target_fpr,
            "validation": args.validation, "seed": args.seed,
        },
        "metrics": {
            "validation": val_metrics,
            "toxicity_cases": binary_metrics(scores_of(model, case_x) >= threshold, case_y),
            "benign_chat": binary_metrics(scores_of(model, chat_x) >= threshold, chat_y),
        },
    }
    save_and_report(model, args.out, metadata, started, width=15)


if __name__ == "__main__":
    main()
