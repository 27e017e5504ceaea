"""The common part of the guard's trained classifiers (the injection detector, the toxicity classifier):
the artifact is loaded on first use, once, and texts are scored against its threshold."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from stratus.guard.lazy import Lazy

# The direct-injection detectors' block tier: per artifact, the score from which the input rail's `block`
# blocks (under it, down to the artifact's own threshold, it flags). Chosen by
# `python -m stratus_tools.guard.block_tier` on threshold sources only and kept apart from the artifacts, which
# their training scripts reproduce byte for byte (docs/guard.md, "Blocking by default").
BLOCK_TIERS = Path(__file__).resolve().parent / "models" / "injection-block.json"


@functools.cache
def _block_tiers(path: Path = BLOCK_TIERS) -> dict[str, Any]:
    if not path.is_file():
        return {}
    tiers: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["models"]
    return tiers


def block_tier(model_name: str) -> float | None:
    """The block tier of an injection artifact (by its name, e.g. "injection-v3"); None where it has none."""
    tier = _block_tiers().get(model_name)
    return float(tier["block_threshold"]) if tier else None


def tier_action(score: float, threshold: float, block_at: float | None) -> str:
    """`block` as it is tiered: blocked from the block tier, flagged from the threshold under it (without a
    tier, only flagged), else passed."""
    if block_at is not None and score >= block_at:
        return "block"
    return "flag" if score >= threshold else "pass"


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

    @property
    def block_threshold(self) -> float | None:
        """The score from which a hit is blocked rather than flagged (None: the threshold itself)."""
        return getattr(self.model, "block_threshold", None)
