"""Pluggable reranking stage. No cross-encoder ships offline, so the default is "none"; a hosted rerank
API (or a local cross-encoder) registers itself under a name and is chosen by `STRATUS_RERANKER`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from stratus.errors import Unsupported
from stratus.retrieval.models import Hit


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, hits: list[Hit], k: int) -> list[Hit]:
        """The best `k` of `hits` for `query`, best first, with `rerank_score` set."""
        ...


class NoRerank:
    name = "none"

    def rerank(self, query: str, hits: list[Hit], k: int) -> list[Hit]:
        return hits[:k]


_REGISTRY: dict[str, Callable[[], Reranker]] = {"none": NoRerank}
_INSTANCES: dict[str, Reranker] = {}


def register_reranker(name: str, factory: Callable[[], Reranker]) -> None:
    """Make a reranker available by name; the factory runs on first use (models load lazily)."""
    _REGISTRY[name] = factory
    _INSTANCES.pop(name, None)


def get_reranker(name: str) -> Reranker:
    if name not in _INSTANCES:
        factory = _REGISTRY.get(name)
        if factory is None:
            known = ", ".join(sorted(_REGISTRY))
            raise Unsupported(f"unknown reranker {name!r} (known: {known})", field="reranker")
        _INSTANCES[name] = factory()
    return _INSTANCES[name]
