"""The common part of the guard's trained classifiers (the injection detector, the toxicity classifier):
the artifact is loaded on first use, once, and texts are scored against its threshold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from stratus.guard.lazy import Lazy


class _Thresholded(Protocol):
    threshold: float


M = TypeVar("M", bound=_Thresholded)


class LazyDetector(Generic[M]):
    """Loads the artifact on first use (thread-safe) and scores texts against its threshold."""

    def __init__(self, load: Callable[[], M]) -> None:
        self._model = Lazy(load)

    @property
    def model(self) -> M:
        return self._model.get()

    @property
    def threshold(self) -> float:
        return self.model.threshold
