"""Text embedders behind one interface; the model name travels with every vector.

May import: nothing of stratus. Never stratus_tools; no cycles (pyproject.toml, [tool.importlinter]).
"""

from __future__ import annotations

import functools
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    model_name: str
    dimensions: int
    max_tokens: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the model's tokens (without special tokens), for budgeted chunking."""
        ...


@functools.cache
def get_embedder(model_name: str) -> Embedder:
    if model_name == "all-MiniLM-L6-v2-int8":
        from stratus.embeddings.minilm import MiniLMEmbedder

        return MiniLMEmbedder()
    if model_name == "paraphrase-MiniLM-L3-v2":  # optional offline model: faster, weaker (docs/retrieval.md)
        from stratus.embeddings.paraphrase_minilm import ParaphraseMiniLML3Embedder

        return ParaphraseMiniLML3Embedder()
    raise ValueError(f"unknown embedding model {model_name!r} (STRATUS_EMBEDDING_MODEL)")
