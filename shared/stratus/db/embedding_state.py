"""Per-tenant embedding state and the vectors of models other than the deployment's (SQL adapter;
callers hold a tenant transaction). Migration 0015 has the schema."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import psycopg
from psycopg import sql

from stratus.db.vector_index import HNSW_EF_CONSTRUCTION, HNSW_M, vector_expression, vector_type


@dataclass(frozen=True)
class EmbeddingState:
    tenant_id: str
    query_model: str | None  # None: the deployment's model
    target_model: str | None
    cursor: int
    embedded: int
    total: int
    started_at: datetime | None
    previous_model: str | None
    switched_at: datetime | None


_COLUMNS = ("tenant_id, query_model, target_model, cursor, embedded, total, started_at, previous_model,"
            " switched_at")


def get(conn: psycopg.Connection, tenant_id: str, *, lock: str | None = None) -> EmbeddingState | None:
    """The tenant's row; `lock` 'share' (ingestion: the set of models must not change under it) or
    'update' (the re-embedding's own steps)."""
    suffix = {None: "", "share": " FOR SHARE", "update": " FOR UPDATE"}[lock]
    row = conn.execute(f"SELECT {_COLUMNS} FROM tenant_embeddings WHERE tenant_id = %s{suffix}",
                       [tenant_id]).fetchone()
    return EmbeddingState(*row) if row else None


def ensure(conn: psycopg.Connection, tenant_id: str) -> None:
    conn.execute("INSERT INTO tenant_embeddings (tenant_id) VALUES (%s) ON CONFLICT DO NOTHING", [tenant_id])


def update(conn: psycopg.Connection, tenant_id: str, **values: object) -> None:
    assigns = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values)
    conn.execute(sql.SQL("UPDATE tenant_embeddings SET {}, updated_at = now() WHERE tenant_id = %s")
                 .format(assigns), [*values.values(), tenant_id])


def missing(conn: psycopg.Connection, tenant_id: str, model: str, *, after: int, limit: int
            ) -> list[tuple[int, str]]:
    """(chunk id, text) of the tenant's chunks above `after` with no `model` vector, by id."""
    rows = conn.execute(
        "SELECT c.id, c.text FROM chunks c WHERE c.tenant_id = %(t)s AND c.id > %(after)s"
        " AND c.embedding_model <> %(m)s AND NOT EXISTS (SELECT 1 FROM chunk_embeddings e"
        "  WHERE e.chunk_id = c.id AND e.embedding_model = %(m)s)"
        " ORDER BY c.id LIMIT %(limit)s",
        {"t": tenant_id, "m": model, "after": after, "limit": limit}).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def count_missing(conn: psycopg.Connection, tenant_id: str, model: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM chunks c WHERE c.tenant_id = %(t)s AND c.embedding_model <> %(m)s"
        " AND NOT EXISTS (SELECT 1 FROM chunk_embeddings e WHERE e.chunk_id = c.id AND e.embedding_model = %(m)s)",
        {"t": tenant_id, "m": model}).fetchone()
    return int(row[0]) if row else 0


def count_chunks(conn: psycopg.Connection, tenant_id: str) -> int:
    row = conn.execute("SELECT count(*) FROM chunks WHERE tenant_id = %s", [tenant_id]).fetchone()
    return int(row[0]) if row else 0


def put_vectors(conn: psycopg.Connection, tenant_id: str, model: str, chunk_ids: Sequence[int],
                vectors: np.ndarray) -> int:
    """Store `model`'s vectors of the given chunks; a chunk deleted meanwhile, or one that has its vector already
    (a batch run twice), is skipped. Returns rows written, so that progress never counts a chunk twice."""
    if len(chunk_ids) != len(vectors):
        raise ValueError("one vector per chunk")
    written = 0
    with conn.cursor() as cur:
        for cid, vec in zip(chunk_ids, vectors, strict=True):
            cur.execute(
                "INSERT INTO chunk_embeddings (chunk_id, tenant_id, embedding_model, embedding)"
                " SELECT id, tenant_id, %(m)s, %(v)s FROM chunks WHERE id = %(c)s AND tenant_id = %(t)s"
                " ON CONFLICT (chunk_id, embedding_model) DO NOTHING",
                {"m": model, "v": np.asarray(vec, dtype=np.float32), "c": cid, "t": tenant_id})
            written += cur.rowcount
    return written


def drop_vectors(conn: psycopg.Connection, tenant_id: str, model: str, *, limit: int) -> int:
    """Delete up to `limit` of the tenant's `model` vectors (bounded: one short transaction each)."""
    cur = conn.execute(
        "DELETE FROM chunk_embeddings WHERE (chunk_id, embedding_model) IN (SELECT chunk_id, embedding_model"
        " FROM chunk_embeddings WHERE tenant_id = %s AND embedding_model = %s LIMIT %s)",
        [tenant_id, model, limit])
    return cur.rowcount


def ensure_index(conn: psycopg.Connection, model: str, dims: int) -> str:
    """The partial HNSW index of `model`'s vectors in chunk_embeddings (owner connection; idempotent)."""
    name = "chunk_embeddings_" + "".join(ch if ch.isalnum() else "_" for ch in model.lower())[:40]
    # The same expression and operator class dense search casts to (halfvec above 2,000 dimensions).
    conn.execute(sql.SQL(
        "CREATE INDEX IF NOT EXISTS {name} ON chunk_embeddings USING hnsw ({expr} {ops})"
        " WITH (m = {m}, ef_construction = {ef}) WHERE embedding_model = {model}"
    ).format(name=sql.Identifier(name), expr=vector_expression("embedding", dims),
             ops=sql.SQL(f"{vector_type(dims)}_cosine_ops"), m=sql.Literal(HNSW_M),
             ef=sql.Literal(HNSW_EF_CONSTRUCTION), model=sql.Literal(model)))
    return name


def chunk_ids(conn: psycopg.Connection, document_id: object, version: int) -> list[int]:
    """Ids of one document version's chunks, by ordinal (the order they were drafted in)."""
    rows = conn.execute("SELECT id FROM chunks WHERE document_id = %s AND document_version = %s ORDER BY ordinal",
                        [document_id, version]).fetchall()
    return [int(r[0]) for r in rows]
