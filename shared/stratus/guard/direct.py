"""Direct prompt injection (what a caller sends): a logistic head on MiniLM sentence embeddings.

injection-v3's n-grams learn the surface of one public set: on attacks from other sources and on ordinary
chat they fail (docs/guard.md). The embedding model (injection-v4, now v7) reads the sentence embedding
the stack already computes (stratus.embeddings, all-MiniLM-L6-v2) and adds the n-gram model's logit as one
more feature, so a paraphrased or translated attack lands near the attacks it was trained on while
obfuscations the n-grams see (leetspeak, letter spacing) still count. The head is trained by
`python -m stratus_tools.guard.train_direct` on whole sources held apart from those that chose its
threshold and those it is reported on; v7 mixes in how the nearest training texts were labelled
(stratus.guard.neighbours, `python -m stratus_tools.guard.train_neighbours`).

Long inputs are scored as a whole and in windows of packed sentences, keeping the highest score: an
attack in one paragraph of a long message is not diluted by the rest. Base64 runs are decoded and scored
too. Scoring is numpy plus the embedder; the artifact is read on first use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard.detector import LazyDetector, block_tier, read_artifact, write_artifact
from stratus.guard.injection import DEFAULT_MODEL as NGRAM_MODEL
from stratus.guard.injection import InjectionModel, InjectionScore, _decode_base64
from stratus.guard.neighbours import NeighbourBank

MODEL_DIR = Path(__file__).resolve().parent / "models"
# v7 is v6's head with a neighbour bank beside it (stratus.guard.neighbours); under the same rule it keeps
# more attacks on the threshold sources (docs/guard.md). v6 (code, documentation and tasks as benign text)
# had replaced v5, which flagged most pasted bug reports. v4 to v6 stay loadable for comparison.
DEFAULT_MODEL = MODEL_DIR / "injection-v7"
EMBEDDING_MODEL = "all-MiniLM-L6-v2-int8"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
WINDOW_WORDS = 60  # sentences are packed into windows of about this many words (MiniLM reads up to 256 tokens)
MAX_WINDOWS = 12  # bounds the embedding cost of a very long input (12 x ~80 tokens)


def windows(text: str, size: int = WINDOW_WORDS, limit: int = MAX_WINDOWS) -> list[str]:
    """Sentences packed greedily into windows of about `size` words, overlapping by one sentence (an
    instruction may straddle a break); none for a text that fits one window."""
    words = text.split()
    if len(words) <= size:
        return []
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    # A sentence longer than a window (no punctuation) is cut into word runs.
    pieces: list[str] = []
    for s in sentences:
        w = s.split()
        pieces += [" ".join(w[i : i + size]) for i in range(0, len(w), size)]
    out: list[str] = []
    current: list[str] = []
    for piece in pieces:
        if current and len(" ".join(current + [piece]).split()) > size:
            out.append(" ".join(current))
            current = current[-1:] if len(current[-1].split()) < size // 2 else []
        current.append(piece)
    if current:
        out.append(" ".join(current))
    if len(out) > limit:  # keep the first and last windows and an even spread between them
        keep = np.linspace(0, len(out) - 1, limit).round().astype(int)
        out = [out[i] for i in sorted(set(keep.tolist()))]
    return out


def views(text: str) -> list[tuple[str, str]]:
    """The texts a message is scored as: itself, its windows, its decoded base64 runs."""
    out = [("text", text)] + [("window", w) for w in windows(text)]
    for run in _BASE64_RUN.findall(text):
        decoded = _decode_base64(run)
        if decoded:
            out.append(("base64", decoded))
    return out


def best_views(texts: Sequence[str], score: Callable[[list[str]], np.ndarray]) -> list[tuple[float, str]]:
    """Each text's highest score over its views, and the view that gave it (the earliest on a tie: the text
    itself first). `score` takes every view of every text in one batch."""
    expanded = [(i, name, v) for i, t in enumerate(texts) for name, v in views(t)]
    flat = [v for _, _, v in expanded]
    scores = score(flat) if flat else np.zeros(0)
    best: list[tuple[float, str] | None] = [None] * len(texts)
    for (i, name, _), s in zip(expanded, scores, strict=True):
        current = best[i]
        if current is None or s > current[0]:
            best[i] = (float(s), name)
    return [b if b is not None else (0.0, "text") for b in best]


@dataclass
class DirectModel:
    weights: np.ndarray  # float32 (384 + 1,): embedding dimensions, then the n-gram logit
    bias: float
    threshold: float
    metadata: dict[str, Any] = field(default_factory=dict)
    ngram: InjectionModel | None = None
    context_threshold: float = 1.0  # not for retrieved chunks: the context rail keeps injection-v3
    block_threshold: float | None = None  # the input rail's block tier (detector.BLOCK_TIERS)
    neighbours: NeighbourBank | None = None  # v7 on: mixed with the head's probability (`alpha`)
    alpha: float = 0.0

    @classmethod
    def load(cls, stem: Path = DEFAULT_MODEL) -> DirectModel:
        arrays, metadata = read_artifact(stem, "injection model artifact",
                                         "python -m stratus_tools.guard.train_direct")
        weights, bias = arrays["weights"].astype(np.float32), float(arrays["bias"])
        ngram = InjectionModel.load(MODEL_DIR / metadata["ngram_model"])
        if weights.shape != (metadata["dimensions"] + 1,):
            raise ValueError(f"injection model {stem.with_suffix('.npz')}: weights shape {weights.shape} does not "
                             "match dimensions")
        bank, alpha = None, 0.0
        if "neighbours" in metadata:
            params = metadata["neighbours"]
            bank = NeighbourBank.load(neighbours_path(stem), int(params["k"]), float(params["temperature"]))
            alpha = float(params["alpha"])
        return cls(weights=weights, bias=bias, threshold=float(metadata["threshold"]), metadata=metadata,
                   ngram=ngram, block_threshold=block_tier(stem.name), neighbours=bank, alpha=alpha)

    def save(self, stem: Path, metadata: dict[str, Any]) -> None:
        write_artifact(stem, {"weights": self.weights, "bias": np.float64(self.bias)}, metadata)
        if self.neighbours is not None:
            self.neighbours.save(neighbours_path(stem))
        self.metadata = metadata

    def features(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """[embedding, n-gram logit] per text; the logit is clipped so one feature cannot dominate."""
        assert self.ngram is not None
        logits = np.array([_logit(self.ngram.raw_score(t)) for t in texts], dtype=np.float32)
        return np.hstack([embeddings, np.clip(logits, -8.0, 8.0)[:, None] / 8.0])

    def probabilities(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        z = self.features(texts, embeddings) @ self.weights + self.bias
        probs: np.ndarray = 1.0 / (1.0 + np.exp(-z.astype(np.float64)))
        if self.neighbours is not None and len(texts):
            probs = (1.0 - self.alpha) * probs + self.alpha * self.neighbours.attack_share(embeddings)
        return probs

    def assess_many(self, texts: Sequence[str]) -> list[InjectionScore]:
        from stratus.embeddings import get_embedder

        embed = get_embedder(EMBEDDING_MODEL).embed
        return [InjectionScore(score=s, flagged=s >= self.threshold, threshold=self.threshold, view=v)
                for s, v in best_views(texts, lambda flat: self.probabilities(flat, embed(flat)))]


def neighbours_path(stem: Path) -> Path:
    """Where an artifact's neighbour bank lies: `<stem>.neighbours.npz`."""
    return stem.with_name(f"{stem.name}.neighbours.npz")


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


class DirectDetector(LazyDetector[DirectModel]):
    """Same calls as InjectionDetector (`threshold`, `score`, `assess`), for the input rail."""

    def __init__(self, stem: Path = DEFAULT_MODEL, threshold: float | None = None) -> None:
        super().__init__(lambda: self._load(stem, threshold))

    @staticmethod
    def _load(stem: Path, threshold: float | None) -> DirectModel:
        model = DirectModel.load(stem)
        if threshold is not None:  # a tenant policy's own threshold
            model.threshold = threshold
        return model

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([s.score for s in self.model.assess_many(texts)], dtype=np.float64)

    def assess(self, texts: Sequence[str]) -> list[InjectionScore]:
        return self.model.assess_many(texts)


@functools.cache
def get_direct_detector() -> DirectDetector:
    """The process-wide direct-injection detector with the artifact's own threshold (loaded lazily)."""
    return DirectDetector()


__all__ = ["DEFAULT_MODEL", "NGRAM_MODEL", "DirectDetector", "DirectModel", "best_views",
           "get_direct_detector", "neighbours_path", "views", "windows"]
