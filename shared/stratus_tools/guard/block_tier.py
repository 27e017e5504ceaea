"""Choose the input rail's block tier for each direct-injection detector, on threshold sources only.

    python -m stratus_tools.guard.block_tier [--out shared/stratus/guard/models/injection-block.json]

A detector's own threshold decides what is *flagged*: it keeps the false-positive rate at or under 2% on
chat and prompts and 5% on code and documentation (train_direct) among the threshold sources, and on
people's chat and long writing from other sources it flags more than that. Blocking by default needs a
stricter figure, so each detector gets a second one, its block tier: the lowest score whose false-positive
rate is at most BLOCK_FPR (the issue's 2% for blocking by default) on every benign threshold source, code and
documentation included, and on the first half of people's chat (`chitchat-threshold`, role `block`: a source
of the block tier only; its other half is a report source). The input rail's `block` blocks from the tier
and flags between the two (stratus.guard.rails).

Written for injection-v3 (the n-gram default) and the embedding detector (direct.DEFAULT_MODEL), with what
each then catches and wrongly blocks on the report sources (never used to choose), and the same figures on
each report source's CI sample (tests/integration/test_guard_block_tier.py recomputes them).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard.detector import BLOCK_TIERS
from stratus.guard.direct import DEFAULT_MODEL as DIRECT_MODEL
from stratus.guard.direct import DirectModel
from stratus.guard.injection import DEFAULT_MODEL as NGRAM_MODEL
from stratus.guard.injection import InjectionModel
from stratus_tools.guard.direct_eval import Scored, metrics_at, sampled, score_sources, score_texts
from stratus_tools.guard.injection_sources import CHAT_FPR, by_role
from stratus_tools.guard.train_direct import binding_threshold, judged_at

BLOCK_FPR = CHAT_FPR
RULE = (f"lowest score with FPR <= {BLOCK_FPR} on every benign threshold source (chat, prompts, code, "
        "documentation) and on the first half of people's chat (chitchat-threshold)")


def scorer(name: str) -> Callable[[list[str]], np.ndarray]:
    """The detector's scores as the input rail computes them (highest over each text's views)."""
    if name == NGRAM_MODEL.name:
        ngram = InjectionModel.load(NGRAM_MODEL)
        return lambda texts: ngram.score(texts) if texts else np.zeros(0)
    direct = DirectModel.load(DIRECT_MODEL)
    return lambda texts: score_texts(direct, texts)


def _pairs(scored: Scored) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: (s, y) for name, (s, y, _) in scored.items()}


def choose(scored: Scored, max_fpr: float = BLOCK_FPR) -> tuple[float, str]:
    """The tier and the source that bound it: the lowest score keeping FPR <= max_fpr on every benign
    source of `scored` (train_direct's rule, one limit for all)."""
    return binding_threshold(_pairs(scored), max_fpr)


def judged(scored: Scored, threshold: float) -> dict[str, Any]:
    """Pooled attack recall and each benign source's FPR on the choosing sources, at `threshold`."""
    at = judged_at(_pairs(scored), threshold)
    return at | {"recall": round(at["recall"], 4)}


def tier(name: str, caps: dict[str, int]) -> dict[str, Any]:
    score = scorer(name)
    choosing = score_sources(score, by_role("threshold") + by_role("block"))
    threshold, bound_by = choose(choosing)
    flag = float(json.loads((DIRECT_MODEL.parent / f"{name}.json").read_text(encoding="utf-8"))["threshold"])
    report = score_sources(score, by_role("report"))
    return {
        "block_threshold": threshold,
        "bound_by": bound_by,
        "threshold": flag,  # the artifact's own: hits from here up to the tier are flagged
        "threshold_sources": {"at_block_threshold": judged(choosing, threshold),
                              "at_threshold": judged(choosing, flag)},
        "metrics": metrics_at(report, threshold),
        "ci_sample": {"caps": caps, "metrics": metrics_at(sampled(report, caps), threshold)},
    }


def build(out: Path = BLOCK_TIERS) -> dict[str, Any]:
    started = time.perf_counter()
    caps = DirectModel.load(DIRECT_MODEL).metadata["ci_sample"]["caps"]  # the CI check's sample sizes
    result: dict[str, Any] = {
        "rule": RULE,
        "sources": {role: [s.name for s in by_role(role)] for role in ("threshold", "block", "report")},
        "models": {name: tier(name, caps) for name in (NGRAM_MODEL.name, DIRECT_MODEL.name)},
    }
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {out} in {time.perf_counter() - started:.0f}s")
    for name, t in result["models"].items():
        print(f"{name}: block tier {t['block_threshold']:.4f} (bound by {t['bound_by']}), "
              f"threshold {t['threshold']:.4f}")
        for source, m in t["metrics"].items():
            print(f"  {source:>26}: " + " ".join(f"{k} {v}" for k, v in m.items()))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BLOCK_TIERS)
    build(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
