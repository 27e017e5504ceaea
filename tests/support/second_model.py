"""A second offline embedding model for tests: MiniLM's vectors turned by a fixed random rotation.

It ranks exactly as MiniLM does (cosine is rotation-invariant), so a test knows the right answer under
either model, while its vectors live in another space: a question embedded with one model and searched
in the other's index comes back with unrelated chunks, so mixing models cannot pass unnoticed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

NAME = "minilm-rotated-test"


class RotatedMiniLM:
    model_name = NAME

    def __init__(self) -> None:
        from stratus.embeddings import get_embedder

        self._base = get_embedder("all-MiniLM-L6-v2-int8")
        self.dimensions = self._base.dimensions
        self.max_tokens = self._base.max_tokens
        q, _ = np.linalg.qr(np.random.default_rng(23).standard_normal((self.dimensions, self.dimensions)))
        self._rotation = q.astype(np.float32)

    def embed(self, texts: list[str], *, kind: str = "document") -> np.ndarray:
        out = self._base.embed(texts) @ self._rotation
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    def count_tokens(self, text: str) -> int:
        return self._base.count_tokens(text)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self._base.token_offsets(text)


@contextmanager
def registered() -> Iterator[str]:
    """The model registered by name, with a dense index entry, for the duration of the block."""
    from stratus import embeddings
    from stratus.db import chunks

    embeddings.register(NAME, RotatedMiniLM)
    chunks.DENSE_INDEXES[NAME] = 384
    try:
        yield NAME
    finally:
        embeddings.unregister(NAME)
        chunks.DENSE_INDEXES.pop(NAME, None)
