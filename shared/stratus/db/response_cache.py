"""Response cache rows (infra/db/migrations/0005_response_cache.sql).

Every function expects a connection inside `tenant_transaction(tenant_id)`; RLS scopes what it sees, and
each query also names `tenant_id` so the planner uses the (tenant_id, ...) indexes. A lookup that hits
bumps the entry's counter in the same statement (one round trip).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

# `now` is the caller's clock when given (tests, replays), the database's otherwise.
_NOW = "COALESCE(%(now)s::timestamptz, now())"
_RETURNING = "id, response, created_at, citations"


@dataclass(frozen=True)
class CacheRow:
    id: int
    response: dict[str, Any]
    created_at: datetime
    citations: list[dict[str, int]]  # [{number, chunk_id}] as numbered when the answer was stored
    similarity: float


@dataclass(frozen=True)
class NewEntry:
    tenant_id: str
    scope_key: str
    exact_key: str
    prompt_hash: str
    model_alias: str
    params_hash: str
    context_fingerprint: str
    cited_refs: Sequence[str]
    citations: Sequence[dict[str, int]]
    question: str
    guard: str
    embedding_model: str | None
    embedding: np.ndarray | None
    response: dict[str, Any]
    ttl_s: int


def _row(row: tuple[Any, ...], similarity: float) -> CacheRow:
    return CacheRow(id=int(row[0]), response=row[1], created_at=row[2], citations=row[3], similarity=similarity)


def find_exact(conn: psycopg.Connection, tenant_id: str, exact_key: str, now: datetime | None) -> CacheRow | None:
    row = conn.execute(
        "UPDATE response_cache SET hits = hits + 1, last_hit_at = " + _NOW
        + " WHERE tenant_id = %(tenant)s AND exact_key = %(key)s AND expires_at > " + _NOW
        + " RETURNING " + _RETURNING,
        {"tenant": tenant_id, "key": exact_key, "now": now},
    ).fetchone()
    return _row(row, 1.0) if row else None


def find_similar(
    conn: psycopg.Connection,
    tenant_id: str,
    scope_key: str,
    *,
    embedding_model: str,
    embedding: np.ndarray,
    guard: str,
    min_similarity: float,
    context_fingerprint: str,
    current_refs: Sequence[str],
    now: datetime | None,
) -> CacheRow | None:
    """The most similar live entry of the scope, with the same guard, whose answer the current context
    still supports: every
    chunk it cited is among the current passages, or, for an answer that cited nothing (a refusal, plain
    chat), the context is the very same one."""
    row = conn.execute(
        "UPDATE response_cache AS r SET hits = r.hits + 1, last_hit_at = " + _NOW
        + " FROM (SELECT id, 1 - (embedding <=> %(q)s) AS similarity FROM response_cache"
        "   WHERE tenant_id = %(tenant)s AND scope_key = %(scope)s AND embedding_model = %(model)s"
        "     AND guard = %(guard)s AND expires_at > " + _NOW
        + "     AND (CASE WHEN cardinality(cited_refs) = 0 THEN context_fingerprint = %(fp)s"
        "               ELSE cited_refs <@ %(refs)s::text[] END)"
        "   ORDER BY embedding <=> %(q)s LIMIT 1) AS best"
        " WHERE r.id = best.id AND best.similarity >= %(min)s"
        " RETURNING r.id, r.response, r.created_at, r.citations, best.similarity",
        {
            "tenant": tenant_id, "scope": scope_key, "model": embedding_model, "q": embedding, "now": now,
            "guard": guard, "fp": context_fingerprint, "refs": list(current_refs), "min": min_similarity,
        },
    ).fetchone()
    return _row(row[:4], float(row[4])) if row else None


def insert(conn: psycopg.Connection, entry: NewEntry, now: datetime | None) -> int:
    """Store an entry; one with the same exact key (e.g. expired, or stored by a concurrent request) is
    replaced, counters reset."""
    row = conn.execute(
        "INSERT INTO response_cache (tenant_id, scope_key, exact_key, prompt_hash, model_alias, params_hash,"
        " context_fingerprint, cited_refs, citations, question, guard, embedding_model, embedding, response,"
        " created_at, expires_at)"
        " VALUES (%(tenant)s, %(scope)s, %(key)s, %(prompt)s, %(alias)s, %(params)s, %(fp)s, %(refs)s,"
        " %(citations)s, %(question)s, %(guard)s, %(model)s, %(embedding)s, %(response)s, " + _NOW + ", "
        + _NOW + " + make_interval(secs => %(ttl)s))"
        " ON CONFLICT (tenant_id, exact_key) DO UPDATE SET"
        " cited_refs = EXCLUDED.cited_refs, citations = EXCLUDED.citations,"
        " question = EXCLUDED.question, guard = EXCLUDED.guard,"
        " embedding_model = EXCLUDED.embedding_model, embedding = EXCLUDED.embedding,"
        " response = EXCLUDED.response, hits = 0, last_hit_at = NULL,"
        " created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at"
        " RETURNING id",
        {
            "tenant": entry.tenant_id, "scope": entry.scope_key, "key": entry.exact_key,
            "prompt": entry.prompt_hash, "alias": entry.model_alias, "params": entry.params_hash,
            "fp": entry.context_fingerprint, "refs": list(entry.cited_refs),
            "citations": Jsonb(list(entry.citations)), "question": entry.question, "guard": entry.guard,
            "model": entry.embedding_model, "embedding": entry.embedding, "response": Jsonb(entry.response),
            "ttl": entry.ttl_s, "now": now,
        },
    ).fetchone()
    assert row is not None  # INSERT ... RETURNING always returns the row
    return int(row[0])


def purge_expired(conn: psycopg.Connection, tenant_id: str, now: datetime | None, limit: int | None = None) -> int:
    """Delete the tenant's expired entries (at most `limit`, oldest first); returns how many."""
    cur = conn.execute(
        "DELETE FROM response_cache WHERE id IN (SELECT id FROM response_cache"
        " WHERE tenant_id = %(tenant)s AND expires_at <= " + _NOW + " ORDER BY expires_at LIMIT %(limit)s)",
        {"tenant": tenant_id, "now": now, "limit": limit},
    )
    return cur.rowcount


def count_entries(conn: psycopg.Connection, tenant_id: str) -> int:
    row = conn.execute("SELECT count(*) FROM response_cache WHERE tenant_id = %s", [tenant_id]).fetchone()
    return int(row[0]) if row else 0
