"""Text embedders behind one interface; the model name travels with every vector.

May import: nothing of stratus. Never stratus_tools; no cycles (pyproject.toml, [tool.importlinter]).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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


# Models added by name at run time (a deployment's own adapter, or a test's second model).
_registered: dict[str, Callable[[], Embedder]] = {}


def register(model_name: str, factory: Callable[[], Embedder]) -> None:
    _registered[model_name] = factory
    get_embedder.cache_clear()


@functools.cache
def get_embedder(model_name: str) -> Embedder:
    if model_name in _registered:
        return _registered[model_name]()
    if model_name == "all-MiniLM-L6-v2-int8":
        from stratus.embeddings.minilm import MiniLMEmbedder

        return MiniLMEmbedder()
    raise ValueError(f"unknown embedding model {model_name!r} (STRATUS_EMBEDDING_MODEL)")
