"""Input drift: do recent questions look like the questions of a baseline period?

Two views of the same question, on L2-normalised sentence embeddings:

- **Centroid shift**, 1 - cosine(mean(baseline), mean(recent)): the topic mix moved as a whole.
- **Far share**, the share of recent questions whose cosine to the nearest baseline cluster centroid is under
  a threshold calibrated on the baseline itself: new kinds of question appeared, even if they are a minority
  and barely move the centroid.

Rewordings and near variants of one question (cosine >= 0.8) are collapsed in each window first; the
statistics count distinct questions (see `_distinct_rows`).

Both are compared with what the baseline does to itself, so "drifted" is a statement against a known null:
- the far threshold is the `far_quantile` (5%) quantile of the baseline's own *leave-one-out* similarities
  (each point against its cluster's centroid with that point removed). In-sample similarities would be
  optimistic, since k-means pulls each centroid toward its own points, and held-out questions from the same
  distribution would then come out "far" more often than 5%. The share of baseline points under the
  threshold is the null share;
- the centroid-shift threshold is a high quantile of the shift between random baseline subsets of the
  recent window's size and the rest of the baseline: the shift that sampling noise alone produces at
  that size (small windows are noisy; large ones are not).

Decision rule (`DriftReport.rule` repeats it in each report):
  drifted = (far_count >= MIN_FAR_COUNT and far_share >= FAR_RATIO * null_share and binomial p < ALPHA)
            or (centroid_shift > shift_threshold)
where p = P(X >= far_count) for X ~ Binomial(recent_distinct, null_share). The ratio guards against flagging a
statistically significant but negligible excess on a large window; the binomial test, against flagging a
handful of far questions in a small one.

Pure numpy and the standard library; deterministic (seeded k-means++ and subsampling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

import numpy as np

from stratus.errors import InvalidInput

MIN_BASELINE = 30  # fewer points cannot calibrate a 5% quantile (it would be the single lowest point)
MIN_RECENT = 10  # the binomial test cannot reach ALPHA with fewer (3 far of 9 at 5%: p = 0.008, barely)
FAR_QUANTILE = 0.05  # the null share by construction
FAR_RATIO = 2.0  # far share must be at least this multiple of the null share
MIN_FAR_COUNT = 3
ALPHA = 0.01  # binomial tail probability under which the excess of far questions is not sampling noise
SHIFT_QUANTILE = 0.99  # of the subsample-vs-rest shifts of the baseline
SHIFT_DRAWS = 200
MIN_SHIFT = 0.02  # a floor: shifts under this are too small to act on, however significant
MAX_EXAMPLES = 5
EXAMPLE_CHARS = 200
SEED = 20240611
DUPLICATE_COSINE = 0.8  # rewordings and near variants of a question count once (see _distinct_rows)
EMBEDDING_MODEL = "all-MiniLM-L6-v2-int8"  # the vectors DUPLICATE_COSINE and the measurements were taken with

RULE = (f"drifted when far_count >= {MIN_FAR_COUNT} and far_share >= {FAR_RATIO:g} x null_share and "
        f"P(Binomial(recent_distinct, null_share) >= far_count) < {ALPHA:g}, or when centroid_shift exceeds "
        f"shift_threshold (the {SHIFT_QUANTILE:.0%} quantile of baseline subsample shifts, at least {MIN_SHIFT:g})")


class _Sizes(TypedDict):
    baseline_size: int
    recent_size: int
    baseline_distinct: int
    recent_distinct: int


@dataclass(frozen=True)
class FarExample:
    text: str
    similarity: float  # cosine to the nearest baseline centroid


@dataclass
class DriftReport:
    status: str  # "ok" or "insufficient_data"
    baseline_size: int
    recent_size: int
    baseline_distinct: int = 0  # after collapsing rewordings; the statistics below count these
    recent_distinct: int = 0
    reason: str | None = None
    k: int | None = None
    centroid_shift: float | None = None
    shift_threshold: float | None = None
    far_threshold: float | None = None
    far_count: int | None = None
    far_share: float | None = None
    null_share: float | None = None
    p_value: float | None = None
    drifted: bool = False
    examples: list[FarExample] = field(default_factory=list)
    rule: str = RULE

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types, rounded, for eval_drift."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round(value, 6)
        out["examples"] = [{"text": e.text, "similarity": round(e.similarity, 4)} for e in self.examples]
        return out


def measure_drift(baseline: np.ndarray, recent: np.ndarray, recent_texts: Sequence[str], *, k: int | None = None,
                  far_threshold: float | None = None, max_examples: int = MAX_EXAMPLES) -> DriftReport:
    """Compare `recent` (n x d, texts alongside) with `baseline` (m x d); both rows L2-normalised embeddings.

    `k` overrides the number of baseline clusters (default: from the baseline size); `far_threshold`
    overrides the calibrated cosine threshold (the null share is then measured at that threshold).
    """
    base = _as_unit_rows(baseline, "baseline")
    rec = _as_unit_rows(recent, "recent")
    if len(recent_texts) != len(rec):
        raise InvalidInput(f"recent_texts has {len(recent_texts)} items for {len(rec)} recent vectors",
                           field="recent_texts")
    if len(base) and len(rec) and base.shape[1] != rec.shape[1]:
        raise InvalidInput(f"recent has dimension {rec.shape[1]}, baseline {base.shape[1]}", field="recent")
    if k is not None and k < 1:
        raise InvalidInput("k must be at least 1", field="k")
    baseline_size, recent_size = len(base), len(rec)
    base, (rec, recent_texts) = distinct(base), _distinct_with_texts(rec, recent_texts)
    sizes = _Sizes(baseline_size=baseline_size, recent_size=recent_size, baseline_distinct=len(base),
                   recent_distinct=len(rec))
    if len(base) < MIN_BASELINE or len(rec) < MIN_RECENT:
        return DriftReport("insufficient_data", **sizes, reason=(
            f"need at least {MIN_BASELINE} distinct baseline and {MIN_RECENT} distinct recent questions"))

    k = min(k or choose_k(len(base)), len(base))
    centroids, labels = spherical_kmeans(base, k, seed=SEED)
    loo = _leave_one_out_similarity(base, centroids, labels)
    threshold = float(np.quantile(loo, FAR_QUANTILE)) if far_threshold is None else float(far_threshold)
    null_share = max(float(np.mean(loo < threshold)), 1.0 / len(base))  # never claim a null rate of zero

    sims = (rec @ _unit(centroids).T).max(axis=1)
    far = sims < threshold
    far_count = int(far.sum())
    far_share = far_count / len(rec)
    p_value = binomial_tail(far_count, len(rec), null_share)
    shift = centroid_shift(base, rec)
    shift_threshold = max(_null_shift(base, len(rec)), MIN_SHIFT)

    far_drift = far_count >= MIN_FAR_COUNT and far_share >= FAR_RATIO * null_share and p_value < ALPHA
    return DriftReport(
        "ok", **sizes, k=k, centroid_shift=shift, shift_threshold=shift_threshold,
        far_threshold=threshold, far_count=far_count, far_share=far_share, null_share=null_share, p_value=p_value,
        drifted=bool(far_drift or shift > shift_threshold),
        examples=_examples(sims, far, recent_texts, max_examples))


def distinct(x: np.ndarray, cosine: float | None = None) -> np.ndarray:
    return x[_distinct_rows(x, DUPLICATE_COSINE if cosine is None else cosine)]


def _distinct_with_texts(x: np.ndarray, texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    keep = _distinct_rows(x, DUPLICATE_COSINE)
    return x[keep], [texts[i] for i in keep]


def _distinct_rows(x: np.ndarray, cosine: float) -> list[int]:
    """Greedy, in order: keep a row unless it is within `cosine` of a kept one.

    Traffic repeats itself (one user rewording a question, many users asking the FAQ). Counted separately,
    repeats make the baseline look tighter than its questions are (a point's rewordings keep its centroid
    close after it is left out) and make far questions look independent when they are one question asked
    five times, which the binomial test assumes they are not. Measured on the labelled sets (docs/evals.md):
    without this, 5 of 8 same-distribution pairs were flagged; at 0.8, 1. At 0.8 paraphrases (0.9+ with
    MiniLM) and near variants of one question (median 0.8) count once: drift is about kinds of question."""
    keep: list[int] = []
    covered = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        if not covered[i]:
            keep.append(i)
            covered |= x @ x[i] >= cosine
    return keep


def choose_k(n: int) -> int:
    """sqrt(n/2) clusters, 2..20: enough to follow a mix of topics, few enough that each has several points."""
    return max(2, min(20, round(math.sqrt(n / 2))))


def centroid_shift(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 - _cosine(a.mean(axis=0), b.mean(axis=0))


def spherical_kmeans(x: np.ndarray, k: int, *, seed: int, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """k-means on the unit sphere (assign by cosine, centroid = mean), k-means++ seeding from `seed`.

    Returns the (unnormalised) mean of each cluster and each point's cluster. Empty clusters are dropped.
    """
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        distance = np.clip(1.0 - (x @ np.asarray(centres).T).max(axis=1), 0.0, None)
        if distance.sum() <= 0:
            break  # fewer distinct points than k
        centres.append(x[rng.choice(len(x), p=distance / distance.sum())])
    centroids = np.asarray(centres)
    labels = np.full(len(x), -1)
    for _ in range(iterations):
        new_labels = (x @ _unit(centroids).T).argmax(axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        kept = np.unique(labels)
        centroids = np.stack([x[labels == c].mean(axis=0) for c in kept])
        labels = np.searchsorted(kept, labels)
    return centroids, labels


def binomial_tail(count: int, n: int, p: float) -> float:
    """P(X >= count) for X ~ Binomial(n, p), summed in log space (n is at most a few thousand)."""
    if count <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(count, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def _leave_one_out_similarity(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each point's best cosine to a centroid computed without it (its own cluster's mean minus itself)."""
    sizes = np.bincount(labels, minlength=len(centroids))
    sims = x @ _unit(centroids).T
    own_size = sizes[labels]
    own_sum = centroids[labels] * own_size[:, None]
    rest = own_size > 1
    own = np.full(len(x), -1.0)  # a singleton cluster has no centroid without its point
    if rest.any():
        without = (own_sum[rest] - x[rest]) / (own_size[rest] - 1)[:, None]
        own[rest] = np.einsum("ij,ij->i", x[rest], _unit(without))
    sims[np.arange(len(x)), labels] = own
    best: np.ndarray = sims.max(axis=1)  # numpy types this Any
    return best


def _null_shift(base: np.ndarray, n_recent: int) -> float:
    """The SHIFT_QUANTILE quantile of the shift between a random baseline subset of the recent window's size
    and the rest of the baseline: what sampling alone gives (the subset is capped at half the baseline)."""
    rng = np.random.default_rng(SEED)
    size = max(1, min(n_recent, len(base) // 2))
    total = base.sum(axis=0)
    shifts = []
    for _ in range(SHIFT_DRAWS):
        pick = base[rng.choice(len(base), size=size, replace=False)].sum(axis=0)
        shifts.append(1.0 - _cosine(pick, total - pick))
    return float(np.quantile(shifts, SHIFT_QUANTILE))


def _examples(sims: np.ndarray, far: np.ndarray, texts: Sequence[str], limit: int) -> list[FarExample]:
    """The farthest recent questions, distinct texts only, shortened for storage."""
    out: list[FarExample] = []
    seen: set[str] = set()
    for i in np.argsort(sims, kind="stable"):
        if len(out) >= limit or not far[i]:
            break
        text = " ".join(str(texts[i]).split())[:EXAMPLE_CHARS]
        if text not in seen:
            seen.add(text)
            out.append(FarExample(text, float(sims[i])))
    return out


def _as_unit_rows(vectors: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, array.shape[-1] if array.ndim == 2 else 0)
    if array.ndim != 2:
        raise InvalidInput(f"{name} must be a 2-d array of embeddings, got shape {array.shape}", field=name)
    if not np.isfinite(array).all():
        raise InvalidInput(f"{name} has non-finite values", field=name)
    norms = np.linalg.norm(array, axis=1)
    if (norms == 0).any():
        raise InvalidInput(f"{name} has zero vectors (row {int(np.argmin(norms))})", field=name)
    unit: np.ndarray = array / norms[:, None]  # callers pass unit vectors; float32 rounding is undone here
    return unit


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit: np.ndarray = vectors / np.where(norms == 0, 1.0, norms)  # numpy types this Any
    return unit


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denominator if denominator else 0.0
