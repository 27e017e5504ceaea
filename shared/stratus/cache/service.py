"""The response cache: look an answer up before generating, store it after.

Two ways to hit, both inside one scope (tenant, prompt version, model alias, parameters):
- exact: the same normalised question over the very same retrieved chunks;
- semantic: a question whose embedding is at least `threshold` cosine-similar and which shares the stored
  question's numbers and polarity words (keys.semantic_guard), provided every chunk the stored answer
  cited is still among the current passages, with the same version. A changed document gets new
  chunks, so answers built on its old text miss by construction. An answer that cited nothing (a
  refusal, plain chat) says nothing about which chunks support it, so it only hits on the same context.

Everything runs on the caller's connection, inside its `tenant_transaction`: RLS applies, and the tenant
is in every key as well.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

import numpy as np

from stratus.cache.keys import CacheScope, chunk_ref, context_fingerprint, exact_key, semantic_guard
from stratus.config import get_settings
from stratus.db import response_cache as rows
from stratus.db.chunks import Connection
from stratus.errors import InvalidInput
from stratus.llm.types import ContextPassage

_DIMENSIONS = 384  # the column is vector(384); see the migration
# How many expired entries a store clears on its way (bounded, so a miss never pays for a backlog).
_PURGE_ON_STORE = 50


@dataclass(frozen=True)
class CacheHit:
    kind: Literal["exact", "semantic"]
    similarity: float  # 1.0 for exact hits
    entry_id: int
    response: dict[str, Any]  # as stored
    created_at: datetime
    # The stored answer's [n] markers -> the current passages' numbers for the same chunks. Only differs
    # from identity when the same chunks were retrieved in another order or among other passages.
    renumbering: Mapping[int, int] = field(default_factory=dict)


def lookup(
    conn: Connection,
    scope: CacheScope,
    question: str,
    passages: Sequence[ContextPassage],
    embedding: np.ndarray | Callable[[], np.ndarray] | None,
    *,
    semantic: bool,
    threshold: float,
    now: datetime | None = None,
    embedding_model: str | None = None,
) -> CacheHit | None:
    """The cached answer for this request, or None. Counts the hit on the entry. `embedding` may be a
    function: it is called only when the exact lookup misses (an exact hit never pays for embedding)."""
    if not 0 < threshold <= 1:
        raise InvalidInput(f"cache similarity threshold must be in (0, 1], got {threshold}", field="threshold")
    fingerprint = context_fingerprint(passages)
    row = rows.find_exact(conn, scope.tenant_id, exact_key(scope, question, fingerprint), now)
    kind: Literal["exact", "semantic"] = "exact"
    if row is None and semantic and embedding is not None:
        if callable(embedding):
            embedding = embedding()
        row = rows.find_similar(
            conn, scope.tenant_id, scope.key,
            embedding_model=embedding_model or get_settings().embedding_model,
            embedding=_vector(embedding), guard=semantic_guard(question), min_similarity=threshold,
            context_fingerprint=fingerprint,
            current_refs=[chunk_ref(p.chunk_id, p.document_version) for p in passages], now=now,
        )
        kind = "semantic"
    if row is None:
        return None
    numbers = {p.chunk_id: p.number for p in passages}
    renumbering = {c["number"]: numbers[c["chunk_id"]] for c in row.citations if c["chunk_id"] in numbers}
    return CacheHit(kind=kind, similarity=row.similarity, entry_id=row.id, response=row.response,
                    created_at=row.created_at, renumbering=renumbering)


def store(
    conn: Connection,
    scope: CacheScope,
    question: str,
    passages: Sequence[ContextPassage],
    cited_chunk_ids: Sequence[int],
    embedding: np.ndarray | None,
    response: dict[str, Any],
    *,
    ttl_s: int,
    embedding_model: str | None,
    now: datetime | None = None,
) -> int:
    """Cache an answer; returns the entry id. `cited_chunk_ids` are the chunks the answer cites, all of
    them among `passages`. Without an embedding the entry can only hit exactly."""
    if ttl_s <= 0:
        raise InvalidInput("cache ttl_s must be positive (a TTL of 0 means: do not store)", field="ttl_s")
    if embedding is not None and not embedding_model:
        raise InvalidInput("an embedding needs its embedding_model", field="embedding_model")
    by_id = {p.chunk_id: p for p in passages}
    unknown = sorted(set(cited_chunk_ids) - by_id.keys())
    if unknown:
        raise InvalidInput(f"cited chunks {unknown} are not among the passages", field="cited_chunk_ids")
    cited = [by_id[c] for c in dict.fromkeys(cited_chunk_ids)]  # de-duplicated, order kept
    entry = rows.NewEntry(
        tenant_id=scope.tenant_id, scope_key=scope.key,
        exact_key=exact_key(scope, question, context_fingerprint(passages)),
        prompt_hash=scope.prompt_hash, model_alias=scope.model_alias, params_hash=scope.params_hash,
        context_fingerprint=context_fingerprint(passages),
        cited_refs=[chunk_ref(p.chunk_id, p.document_version) for p in cited],
        citations=[{"number": p.number, "chunk_id": p.chunk_id} for p in cited],
        question=question, guard=semantic_guard(question),
        embedding_model=embedding_model if embedding is not None else None,
        embedding=_vector(embedding) if embedding is not None else None,
        response=response, ttl_s=ttl_s,
    )
    entry_id = rows.insert(conn, entry, now)
    rows.purge_expired(conn, scope.tenant_id, now, limit=_PURGE_ON_STORE)
    return entry_id


def purge_expired(conn: Connection, tenant_id: str, *, now: datetime | None = None) -> int:
    """Delete all of a tenant's expired entries (a scheduled clean-up); returns how many."""
    return rows.purge_expired(conn, tenant_id, now)


def embed_question(question: str, embedding_model: str | None = None) -> np.ndarray:
    """The question's embedding, with the model the cache compares in (imports the model on first use)."""
    from stratus.embeddings import get_embedder

    vectors = get_embedder(embedding_model or get_settings().embedding_model).embed([question], kind="query")
    return cast(np.ndarray, vectors[0])


_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")  # [3] and [1, 2]


def renumber_citations(text: str, renumbering: Mapping[int, int]) -> str:
    """Rewrite a cached answer's [n] markers to the current passages' numbers (see CacheHit)."""
    if all(old == new for old, new in renumbering.items()):
        return text

    def _renumber(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.split(r"\s*,\s*", match.group(1))]
        return "[" + ", ".join(str(renumbering.get(n, n)) for n in numbers) + "]"

    return _MARKER.sub(_renumber, text)


def _vector(embedding: np.ndarray) -> np.ndarray:
    vec = np.asarray(embedding, dtype=np.float32).reshape(-1)
    if vec.shape[0] != _DIMENSIONS:
        raise InvalidInput(f"cache embeddings have {_DIMENSIONS} dimensions, got {vec.shape[0]}", field="embedding")
    return vec
