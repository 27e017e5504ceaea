"""Documents and their chunks: versioned, swapped in one transaction, with BM25 statistics and impact
postings kept exact.

Every function expects a connection inside `tenant_transaction(tenant_id)`; RLS scopes what it sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from stratus import lexical_analysis
from stratus.db.records import ChunkDraft, DocumentState, SourceObject

_COLUMNS = "id, tenant_id, source_key, status, version, content_hash, etag, source_modified_at, chunk_count, error"


def _state(row: tuple[Any, ...]) -> DocumentState:
    return DocumentState(
        id=str(row[0]), tenant_id=row[1], source_key=row[2], status=row[3], version=row[4],
        content_hash=row[5], etag=row[6], source_modified_at=row[7], chunk_count=row[8], error=row[9],
    )


def ensure_tenant(conn: psycopg.Connection, tenant_id: str, name: str = "") -> None:
    conn.execute(
        "INSERT INTO tenants (id, name) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING", [tenant_id, name]
    )
    conn.execute(
        "INSERT INTO lexical_stats (tenant_id) VALUES (%s) ON CONFLICT (tenant_id) DO NOTHING", [tenant_id]
    )


def get_document(conn: psycopg.Connection, tenant_id: str, source_key: str) -> DocumentState | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM documents WHERE tenant_id = %s AND source_key = %s", [tenant_id, source_key]
    ).fetchone()
    return _state(row) if row else None


def lock_document(conn: psycopg.Connection, tenant_id: str, source_key: str) -> DocumentState:
    """The document's row, created as `pending` if new, locked until the transaction ends."""
    conn.execute(
        "INSERT INTO documents (tenant_id, source_key, status) VALUES (%s, %s, 'pending')"
        " ON CONFLICT (tenant_id, source_key) DO NOTHING",
        [tenant_id, source_key],
    )
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM documents WHERE tenant_id = %s AND source_key = %s FOR UPDATE",
        [tenant_id, source_key],
    ).fetchone()
    assert row is not None
    return _state(row)


def is_stale(doc: DocumentState, source: SourceObject) -> bool:
    """True when `source` is older than what the document already reflects (an out-of-order event)."""
    if doc.source_modified_at is None or source.last_modified is None:
        return False
    return source.last_modified < doc.source_modified_at


def _lock_tenant_stats(conn: psycopg.Connection, tenant_id: str) -> None:
    # Serialises statistics updates per tenant so concurrent ingests cannot deadlock on term rows.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('stratus.lexical:' || %s))", [tenant_id])


def _adjust_stats(conn: psycopg.Connection, tenant_id: str, document_id: str, version: int, sign: int) -> None:
    conn.execute(
        "UPDATE lexical_stats s SET chunk_count = s.chunk_count + %(sign)s * a.n,"
        " total_length = s.total_length + %(sign)s * a.len"
        " FROM (SELECT count(*) AS n, coalesce(sum(lexeme_count), 0) AS len FROM chunks"
        "       WHERE document_id = %(doc)s AND document_version = %(ver)s) a"
        " WHERE s.tenant_id = %(tenant)s",
        {"sign": sign, "doc": document_id, "ver": version, "tenant": tenant_id},
    )
    conn.execute(
        "INSERT INTO lexical_terms AS t (tenant_id, term, df)"
        " SELECT %(tenant)s, u.lexeme, %(sign)s * count(*) FROM chunks c, unnest(c.lexemes) u"
        " WHERE c.document_id = %(doc)s AND c.document_version = %(ver)s"
        " GROUP BY u.lexeme ORDER BY u.lexeme"
        " ON CONFLICT (tenant_id, term) DO UPDATE SET df = t.df + EXCLUDED.df",
        {"sign": sign, "doc": document_id, "ver": version, "tenant": tenant_id},
    )
    if sign < 0:
        conn.execute("DELETE FROM lexical_terms WHERE tenant_id = %s AND df <= 0", [tenant_id])


# A chunk's impact postings (migration 0011): per lexeme, BM25's tf part at the tenant's reference
# parameters. The same expression writes, finds again for deletion, and rebuilds them.
_POSTINGS = (
    "SELECT c.tenant_id, u.lexeme AS term, (tf.v * (s.impact_k1 + 1) / (tf.v + s.impact_k1"
    " * (1 - s.impact_b + s.impact_b * c.lexeme_count / s.impact_avgdl)))::real AS impact, c.id AS chunk_id"
    " FROM chunks c JOIN lexical_stats s ON s.tenant_id = c.tenant_id"
    " CROSS JOIN LATERAL unnest(c.lexemes) u"
    " CROSS JOIN LATERAL (SELECT coalesce(array_length(u.positions, 1), 1)::float8 AS v) tf"
)


def _add_postings(conn: psycopg.Connection, tenant_id: str, document_id: str, version: int) -> None:
    first = conn.execute(
        "SELECT 1 FROM lexical_stats WHERE tenant_id = %s AND impact_avgdl IS NULL", [tenant_id]
    ).fetchone()
    if first:
        # The tenant's first postings (a new tenant, or one whose chunks predate migration 0011): all of
        # them at once, which also fixes its reference average length.
        rebuild_postings(conn, tenant_id)
        return
    conn.execute(
        f"INSERT INTO lexical_postings (tenant_id, term, impact, chunk_id) {_POSTINGS}"
        " WHERE c.document_id = %s AND c.document_version = %s ORDER BY 2, 3",
        [document_id, version],
    )


def _remove_postings(conn: psycopg.Connection, document_id: str, version: int) -> None:
    # Found by (tenant, term, impact ± rounding) in the primary key, then by chunk id.
    conn.execute(
        f"DELETE FROM lexical_postings p USING ({_POSTINGS}"
        " WHERE c.document_id = %s AND c.document_version = %s) x"
        " WHERE p.tenant_id = x.tenant_id AND p.term = x.term"
        " AND p.impact BETWEEN x.impact - 1e-4 AND x.impact + 1e-4 AND p.chunk_id = x.chunk_id",
        [document_id, version],
    )


def rebuild_postings(conn: psycopg.Connection, tenant_id: str, *, k1: float | None = None,
                     b: float | None = None) -> int:
    """Rewrite the tenant's postings at its current average length and at `k1`/`b` (default: the
    configured STRATUS_BM25_K1/B, which queries must use for the postings to serve them): after a bulk
    load, to end drift, or after the BM25 parameters changed.

    Takes the tenant's statistics lock like ingestion (the caller's transaction holds it to the end);
    returns the number of postings written.
    """
    if k1 is None or b is None:
        from stratus.config import get_settings

        settings = get_settings()
        k1 = settings.bm25_k1 if k1 is None else k1
        b = settings.bm25_b if b is None else b
    _lock_tenant_stats(conn, tenant_id)
    conn.execute("DELETE FROM lexical_postings WHERE tenant_id = %s", [tenant_id])
    conn.execute(
        "UPDATE lexical_stats SET impact_k1 = %s, impact_b = %s, impact_avgdl = CASE WHEN chunk_count > 0"
        " THEN greatest(total_length, 1)::float8 / chunk_count END WHERE tenant_id = %s",
        [float(k1), float(b), tenant_id],
    )
    cur = conn.execute(
        f"INSERT INTO lexical_postings (tenant_id, term, impact, chunk_id) {_POSTINGS}"
        " WHERE c.tenant_id = %s AND s.impact_avgdl IS NOT NULL ORDER BY 2, 3",
        [tenant_id],
    )
    return cur.rowcount


def _lexical_text(chunk: ChunkDraft) -> str:
    return lexical_analysis.indexed_text(chunk.title, chunk.heading_path, chunk.text)


def _remove_version(conn: psycopg.Connection, doc: DocumentState) -> None:
    if doc.version > 0:
        _adjust_stats(conn, doc.tenant_id, doc.id, doc.version, -1)
        _remove_postings(conn, doc.id, doc.version)
    conn.execute("DELETE FROM chunks WHERE document_id = %s", [doc.id])


def replace_version(
    conn: psycopg.Connection,
    doc: DocumentState,
    source: SourceObject,
    *,
    title: str | None,
    content_hash: str,
    chunks: Sequence[ChunkDraft],
    embeddings: np.ndarray,
    embedding_model: str,
) -> int:
    """Swap in a new version of `doc` (locked by `lock_document`); returns its version number."""
    if len(chunks) != len(embeddings):
        raise ValueError("one embedding per chunk")
    _lock_tenant_stats(conn, doc.tenant_id)
    _remove_version(conn, doc)
    version = doc.version + 1
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO chunks (tenant_id, document_id, document_version, ordinal, text, title, heading_path,"
            " page, metadata, token_count, lexemes, lexeme_count, embedding_model, embedding)"
            " VALUES (%(tenant)s, %(doc)s, %(ver)s, %(ordinal)s, %(text)s, %(title)s, %(headings)s, %(page)s,"
            " %(meta)s, %(tokens)s, to_tsvector(%(ts_config)s::regconfig, %(lex)s), 0, %(model)s, %(emb)s)",
            [
                {
                    "tenant": doc.tenant_id, "doc": doc.id, "ver": version, "ordinal": c.ordinal,
                    "text": c.text, "title": c.title, "headings": list(c.heading_path), "page": c.page,
                    "meta": Jsonb(c.metadata), "tokens": c.token_count,
                    "lex": _lexical_text(c), "ts_config": lexical_analysis.TS_CONFIG,
                    "model": embedding_model, "emb": np.asarray(e, dtype=np.float32),
                }
                for c, e in zip(chunks, embeddings, strict=True)
            ],
        )
    # BM25 document length: every indexed token, not only distinct lexemes.
    conn.execute(
        "UPDATE chunks SET lexeme_count = (SELECT coalesce(sum(coalesce(array_length(u.positions, 1), 1)), 0)"
        " FROM unnest(lexemes) u) WHERE document_id = %s AND document_version = %s",
        [doc.id, version],
    )
    _adjust_stats(conn, doc.tenant_id, doc.id, version, +1)
    _add_postings(conn, doc.tenant_id, doc.id, version)
    conn.execute(
        "UPDATE documents SET status = 'ready', version = %s, title = %s, content_hash = %s, etag = %s,"
        " source_version_id = %s, source_modified_at = %s, source_sequencer = %s, size_bytes = %s,"
        " content_type = %s, chunk_count = %s, embedding_model = %s, error = NULL,"
        " attempted_at = now(), updated_at = now() WHERE id = %s",
        [version, title, content_hash, source.etag, source.version_id, source.last_modified, source.sequencer,
         source.size, source.content_type, len(chunks), embedding_model, doc.id],
    )
    return version


def mark_unchanged(conn: psycopg.Connection, doc: DocumentState, source: SourceObject) -> None:
    """Same content as the active version: refresh the source fields and clear any earlier failure."""
    conn.execute(
        "UPDATE documents SET status = 'ready', etag = %s, source_version_id = %s,"
        " source_modified_at = greatest(source_modified_at, %s), source_sequencer = %s, size_bytes = %s,"
        " error = NULL, attempted_at = now(), updated_at = now() WHERE id = %s",
        [source.etag, source.version_id, source.last_modified, source.sequencer, source.size, doc.id],
    )


def record_failure(conn: psycopg.Connection, doc: DocumentState, reason: str) -> None:
    """Keep the previous version (if any) serving; say why the new one was refused."""
    conn.execute(
        "UPDATE documents SET status = CASE WHEN status = 'ready' THEN 'ready' ELSE 'failed' END,"
        " error = %s, attempted_at = now(), updated_at = now() WHERE id = %s",
        [reason[:2000], doc.id],
    )


def delete_document(conn: psycopg.Connection, doc: DocumentState, removed_at: datetime | None = None) -> None:
    """The object is gone: drop its chunks and statistics, keep a `deleted` row as a tombstone."""
    _lock_tenant_stats(conn, doc.tenant_id)
    _remove_version(conn, doc)
    conn.execute(
        "UPDATE documents SET status = 'deleted', chunk_count = 0, error = NULL,"
        " source_modified_at = coalesce(%s, source_modified_at), attempted_at = now(), updated_at = now()"
        " WHERE id = %s",
        [removed_at, doc.id],
    )


def list_documents(conn: psycopg.Connection, tenant_id: str) -> list[dict[str, object]]:
    cur = conn.execute(
        "SELECT id, source_key, title, status, version, chunk_count, error, updated_at FROM documents"
        " WHERE tenant_id = %s ORDER BY source_key",
        [tenant_id],
    )
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def delete_tenant(conn: psycopg.Connection, tenant_id: str) -> None:
    """Drop a tenant and, by cascade, all its documents, chunks and statistics (evals, tests)."""
    conn.execute("DELETE FROM tenants WHERE id = %s", [tenant_id])


# What the documents API shows (never content hashes, etags or the source bookkeeping).
_LISTED = ("id, source_key, title, status, version, chunk_count, size_bytes, content_type, error,"
           " created_at, updated_at")


def _rows(cur: psycopg.Cursor) -> list[dict[str, object]]:
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def document_by_id(conn: psycopg.Connection, tenant_id: str, document_id: str) -> dict[str, object] | None:
    """One document as the API lists it; None when it is not this tenant's (or does not exist)."""
    cur = conn.execute(f"SELECT {_LISTED} FROM documents WHERE tenant_id = %s AND id = %s",
                       [tenant_id, document_id])
    rows = _rows(cur)
    return rows[0] if rows else None


def page_documents(conn: psycopg.Connection, tenant_id: str, *, statuses: Sequence[str], limit: int,
                   after_key: str | None = None) -> list[dict[str, object]]:
    """Up to `limit` documents in key order, after `after_key` (keyset pagination: stable under inserts)."""
    cur = conn.execute(
        f"SELECT {_LISTED} FROM documents WHERE tenant_id = %s AND status = ANY(%s)"
        " AND (%s::text IS NULL OR source_key > %s) ORDER BY source_key LIMIT %s",
        [tenant_id, list(statuses), after_key, after_key, limit],
    )
    return _rows(cur)
