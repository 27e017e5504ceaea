"""Toxicity output rail: is a model's answer insulting, threatening, harassing or hateful?

The classifier is a logistic regression over hashed word + char n-gram TF-IDF (stratus.guard.features),
the same model family as the injection rail, trained by scripts/train_toxicity.py. No registry package
ships English labelled toxicity data, so it learns from a small set written by us
(data/guard/toxicity_train.jsonl) and is measured on a second, separately written set
(evals/guard/toxicity_cases.jsonl); docs/guard.md says what that does and does not prove.

An answer is scored as a whole and sentence by sentence, and the highest score counts: one insult in a
300-token answer would otherwise be diluted by the L2-normalised features of the rest.

Importing this module is cheap: numpy and the artifact are loaded on first use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stratus.guard.detector import LazyDetector
from stratus.guard.lazy import Lazy

if TYPE_CHECKING:
    from stratus.guard.injection import InjectionModel

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "toxicity-v1"
_REPO = Path(__file__).resolve().parents[3]
TRAIN_SET = _REPO / "data" / "guard" / "toxicity_train.jsonl"
CASES = _REPO / "evals" / "guard" / "toxicity_cases.jsonl"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_MAX_SENTENCES = 64  # bounds the cost on a very long answer; the whole text is always scored too


@dataclass(frozen=True)
class ToxicityScore:
    score: float  # 0..1: the highest over the whole text and its sentences
    flagged: bool  # score >= threshold
    threshold: float
    sentence: str | None  # the sentence that scored highest, None when the whole text did


def sentences(text: str) -> list[str]:
    """The sentences worth scoring on their own (more than one, each non-blank), at most _MAX_SENTENCES."""
    parts = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    return parts[:_MAX_SENTENCES] if len(parts) > 1 else []


class ToxicityClassifier(LazyDetector["InjectionModel"]):
    def __init__(self, stem: Path = DEFAULT_MODEL, threshold: float | None = None) -> None:
        super().__init__(lambda: load_model(stem, threshold))

    @classmethod
    def wrapping(cls, model: InjectionModel) -> ToxicityClassifier:
        """A classifier over an in-memory model (training scores candidates before any is saved)."""
        classifier = cls()
        classifier._model = Lazy(lambda: model)
        return classifier

    def assess_one(self, text: str) -> ToxicityScore:
        model = self.model
        best, where = model.raw_score(text), None
        for sentence in sentences(text):
            s = model.raw_score(sentence)
            if s > best:
                best, where = s, sentence
        return ToxicityScore(score=best, flagged=best >= model.threshold, threshold=model.threshold, sentence=where)

    def assess(self, texts: Sequence[str]) -> list[ToxicityScore]:
        return [self.assess_one(t) for t in texts]


def load_model(stem: Path = DEFAULT_MODEL, threshold: float | None = None) -> InjectionModel:
    """The linear model in <stem>.npz/.json. The container class is shared with the injection rail (same
    features, same arrays); only the data and the threshold differ."""
    from stratus.guard.injection import InjectionModel  # numpy: first use only

    if not stem.with_suffix(".npz").is_file() or not stem.with_suffix(".json").is_file():
        raise FileNotFoundError(f"toxicity model artifact missing: {stem}.npz / .json (scripts/train_toxicity.py)")
    model = InjectionModel.load(stem)
    if threshold is not None:  # a tenant policy's own threshold
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"toxicity threshold must be within 0..1, got {threshold}")
        model.threshold = threshold
    return model


@functools.cache
def get_classifier() -> ToxicityClassifier:
    """The process-wide classifier with the artifact's own threshold (loaded on first use)."""
    return ToxicityClassifier()
