"""The vectors a loopback embedding model returns: a deterministic function of the text, so tests can
predict them. Each word of the text adds a fixed pseudo-random direction (seeded by the word), so texts
that share words point the same way and an exact repeat gives the same vector; `salt` separates spaces
(Cohere's search_query vs search_document). Tokens are whitespace-separated words, as in _base."""

from __future__ import annotations

import functools
import hashlib

import numpy as np


@functools.lru_cache(maxsize=65536)
def _direction(word: str, dims: int, salt: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(f"{salt}\x00{word.lower()}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dims)


def fake_vector(text: str, dims: int, *, salt: str = "", normalize: bool = True) -> list[float]:
    counts: dict[str, int] = {}
    for w in text.split() or [""]:
        counts[w.lower()] = counts.get(w.lower(), 0) + 1
    v = sum((n * _direction(w, dims, salt) for w, n in counts.items()), np.zeros(dims))
    if normalize:
        v = v / (np.linalg.norm(v) or 1.0)
    return [round(float(x), 7) for x in v]
