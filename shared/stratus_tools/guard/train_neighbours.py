"""Build injection-v7: injection-v6's head with a neighbour bank of its training texts (stratus.guard.neighbours).

    python -m stratus_tools.guard.train_neighbours [--base shared/stratus/guard/models/injection-v6]
                                                   [--out shared/stratus/guard/models/injection-v7]

- Bank: every text of the `train` sources (the texts the head was fitted on, not their other views), as
  MiniLM vectors with labels; each (source, label) group weighs the same and attacks and benign texts half
  each, as in the head's fit. Stored as DIMS PCA coordinates in int8 (a size decision: the guard and
  gateway functions' layers have a few MiB to spare, docs/deploy.md).
- Choose: k, the temperature and the mixing weight alpha on the `threshold` sources only, under
  train_direct's rule (the threshold is the lowest keeping each benign threshold source at its FPR limit;
  the kept variant has the best threshold-source attack recall). The base head is unchanged.
- Report: the `report` sources, never used to choose; figures and the CI sample go into the artifact.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard.direct import MODEL_DIR, DirectModel
from stratus.guard.neighbours import NeighbourBank
from stratus_tools.guard.direct_eval import embed_cached
from stratus_tools.guard.injection_sources import by_role
from stratus_tools.guard.train_direct import (
    _record,
    fpr_limits,
    group_weights,
    measure_and_save,
    on_threshold_sources,
    texts_digest,
)

BASE = MODEL_DIR / "injection-v6"
OUT = MODEL_DIR / "injection-v7"
DIMS = 128
GRID = [(k, t, a) for k in (10, 20, 50) for t in (0.02, 0.05, 0.1) for a in (0.25, 0.5, 0.75)]


def bank_rows() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(unit vectors, labels, row weights, per-source digest) of the train sources' texts."""
    blocks, labels, groups, digests = [], [], [], {}
    for src in by_role("train"):
        texts, y = src.load()
        digests[src.name] = texts_digest(texts)
        blocks.append(embed_cached(texts))
        labels += y
        groups += [f"{src.name}:{label}" for label in y]
    y_arr = np.asarray(labels, dtype=np.int8)
    weights = group_weights(y_arr, np.asarray(groups), class_balanced=True)  # as in the head's fit
    return np.vstack(blocks).astype(np.float32), y_arr, weights, digests


def build(base: Path = BASE, out: Path = OUT) -> dict[str, Any]:
    started = time.perf_counter()
    head = DirectModel.load(base)
    vectors, labels, weights, digests = bank_rows()
    bank = NeighbourBank.build(vectors, labels, weights, DIMS, k=GRID[0][0], temperature=GRID[0][1])
    print(f"bank: {len(labels)} texts ({int(labels.sum())} attacks) ({time.perf_counter() - started:.0f}s)", flush=True)
    held = {s.name: s.load() for s in by_role("threshold")}
    limits = fpr_limits(by_role("threshold"))
    best: tuple[dict[str, Any], tuple[int, float, float], DirectModel] | None = None
    tried: list[list[float]] = []  # [k, temperature, alpha, threshold, threshold-source recall] per variant
    for k, temperature, alpha in GRID:
        model = replace(head, neighbours=bank.with_params(k, temperature), alpha=alpha, block_threshold=None)
        judged = on_threshold_sources(model, held, limits)
        tried.append([k, temperature, alpha, round(judged["threshold"], 4), round(judged["recall"], 4)])
        print(f"k={k} temperature={temperature} alpha={alpha}: threshold {judged['threshold']:.4f}, "
              f"threshold-source recall {judged['recall']:.4f}", flush=True)
        if best is None or judged["recall"] > best[0]["recall"]:
            best = (judged, (k, temperature, alpha), model)
    assert best is not None
    judged, (k, temperature, alpha), model = best
    model.threshold = judged["threshold"]
    metadata: dict[str, Any] = {key: value for key, value in head.metadata.items()
                                if key not in ("metrics", "ci_sample", "threshold_sources", "remeasured_sources")}
    metadata |= {
        "model": out.name,
        "base_model": base.name,  # the head's weights, bias and n-gram feature, unchanged
        "threshold": model.threshold,
        "neighbours": {"k": k, "temperature": temperature, "alpha": alpha, "dims": DIMS, "rows": len(labels),
                       "attacks": int(labels.sum()), "tried": tried,
                       "rule": "the best threshold-source recall under the threshold rule",
                       "bank": "the train sources' texts (not their other views); each (source, label) group "
                               "weighs the same, attacks and benign texts half each",
                       "source_texts": digests},
        "threshold_sources": {out.name: _record(judged),
                              base.name: _record(on_threshold_sources(head, held, limits))},
    }
    return measure_and_save(model, out, metadata, started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, default=BASE)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    build(args.base, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
