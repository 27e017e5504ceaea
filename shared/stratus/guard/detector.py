"""The common part of the guard's trained classifiers (the injection detector, the toxicity classifier):
the artifact is loaded on first use, once, and texts are scored against its threshold."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from stratus.guard.lazy import Lazy

if TYPE_CHECKING:
    import numpy as np

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


def read_artifact(stem: Path, what: str, trainer: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A trained artifact's arrays (`<stem>.npz`) and metadata (`<stem>.json`). A missing file is named with
    the command that writes it: "<what> missing: <npz> / <json> (<trainer>)"."""
    import numpy as np  # here, not at import: the guard's cold start pays for no detector it has not used

    npz, meta = stem.with_suffix(".npz"), stem.with_suffix(".json")
    if not npz.is_file() or not meta.is_file():
        raise FileNotFoundError(f"{what} missing: {npz} / {meta} ({trainer})")
    with np.load(npz) as stored:
        arrays = {name: stored[name] for name in stored.files}
    return arrays, json.loads(meta.read_text(encoding="utf-8"))


def write_artifact(stem: Path, arrays: dict[str, Any], metadata: dict[str, Any]) -> None:
    """`<stem>.npz` (compressed, in the arrays' order) and `<stem>.json` (sorted keys): what read_artifact reads,
    the same bytes for the same inputs (retraining reproduces an artifact)."""
    import numpy as np

    stem.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(stem.with_suffix(".npz"), **arrays)
    stem.with_suffix(".json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8")


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
