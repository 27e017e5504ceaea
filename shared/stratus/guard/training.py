"""Training and evaluation helpers for the guard classifiers (never on the request path).

Both rails that are linear models over hashed n-gram TF-IDF (stratus.guard.features) learn the same way:
class-balanced logistic regression fitted full-batch from zero weights (no randomness, so the same data
gives the same weights), and a decision threshold picked on a validation split for a target
false-positive rate. numpy only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stratus.guard import features as F


def train_logistic(
    x: F.SparseRows, y: np.ndarray, l2: float, iterations: int, lr: float
) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression, full-batch Adam from zero weights (deterministic)."""
    pos = y.mean()
    sample_w = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)) / len(y)
    w = np.zeros(x.n_features)
    b = 0.0
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), 0.0, 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, iterations + 1):
        p = 1.0 / (1.0 + np.exp(-(x.dot(w) + b)))
        g = (p - y) * sample_w
        grad_w = x.tdot(g) + l2 * w
        grad_b = g.sum()
        m_w = beta1 * m_w + (1 - beta1) * grad_w
        v_w = beta2 * v_w + (1 - beta2) * grad_w**2
        m_b = beta1 * m_b + (1 - beta1) * grad_b
        v_b = beta2 * v_b + (1 - beta2) * grad_b**2
        step = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
        w -= step * m_w / (np.sqrt(v_w) + eps)
        b -= step * m_b / (np.sqrt(v_b) + eps)
    return w.astype(np.float32), float(b)


def threshold_at_fpr(scores: np.ndarray, y: np.ndarray, max_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on these labels stays at or below max_fpr."""
    negatives = np.sort(scores[y == 0])[::-1]
    allowed = int(np.floor(max_fpr * len(negatives)))  # this many negatives may score >= threshold
    # Flag when score >= threshold: put the threshold just above the (allowed+1)-th highest negative.
    return float(np.nextafter(negatives[allowed], 1.0)) if allowed < len(negatives) else 0.0


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): `fraction` of each class held out, chosen by a seeded shuffle."""
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        held += idx[: max(1, round(fraction * len(idx)))].tolist()
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def load_labelled_jsonl(path: Path, label_key: str) -> tuple[list[str], np.ndarray]:
    """JSON lines with "text" and a boolean/0-1 `label_key`, as texts and 0/1 labels; errors name the line."""
    texts: list[str] = []
    labels: list[int] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row["text"], row[label_key]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: expected a JSON object with 'text' and {label_key!r} ({exc})") from exc
        if not isinstance(text, str) or not isinstance(label, bool | int):
            raise ValueError(f"{path}:{n}: 'text' must be a string and {label_key!r} a boolean")
        texts.append(text)
        labels.append(int(label))
    return texts, np.array(labels, dtype=np.int8)


def files_sha256(paths: Sequence[Path]) -> str:
    """One hash over the given files' bytes, in order: recorded so an artifact can be traced to its data."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()
