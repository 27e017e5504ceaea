"""Chunk search: BM25 over impact postings or the GIN-indexed tsvectors, HNSW cosine over the partial
vector index.

Every function expects a connection inside `tenant_transaction(tenant_id)`; RLS scopes what it sees, and
each query also filters `tenant_id` explicitly so the planner can use it and a policy bug cannot leak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from stratus import lexical_analysis
from stratus.db.vector_index import MIGRATED, model_dimensions, vector_expression, vector_type
from stratus.errors import Unsupported

Connection = psycopg.Connection  # for domain signatures, which do not import the driver

# The migrated partial HNSW indexes: model name -> dimensions (others: stratus.db.vector_index).
DENSE_INDEXES: dict[str, int] = {model: dims for model, (_name, dims) in MIGRATED.items()}


@dataclass(frozen=True)
class ChunkScope:
    """Filters shared by both retrievers. `document_ids=[]` matches nothing; None means no filter."""

    document_ids: Sequence[str] | None = None
    metadata: Mapping[str, object] | None = None

    def clauses(self) -> tuple[sql.Composable, dict[str, object]]:
        parts: list[sql.Composable] = []
        params: dict[str, object] = {}
        if self.document_ids is not None:
            parts.append(sql.SQL(" AND c.document_id = ANY(%(scope_docs)s::uuid[])"))
            params["scope_docs"] = list(self.document_ids)
        if self.metadata:
            parts.append(sql.SQL(" AND c.metadata @> %(scope_meta)s"))
            params["scope_meta"] = Jsonb(dict(self.metadata))
        return sql.Composed(parts), params


@dataclass(frozen=True)
class LexicalStats:
    chunk_count: int
    avg_length: float
    df: dict[str, int]  # only the terms asked for that occur in the tenant's corpus
    # The reference parameters of the tenant's impact postings (migration 0011); avgdl None: no postings.
    impact_k1: float = 1.5
    impact_b: float = 0.9
    impact_avgdl: float | None = None


# Start of an impact-ordered read: above every impact (BM25's tf part is < k1 + 1) and every chunk id.
POSTINGS_START = (float("inf"), 2**63 - 1)


def query_lexemes(conn: psycopg.Connection, query: str) -> list[str]:
    """The query's distinct lexemes, normalised exactly as the chunks' tsvectors were."""
    rows = conn.execute(
        "SELECT lexeme FROM unnest(to_tsvector(%s::regconfig, %s))", [lexical_analysis.TS_CONFIG, query]
    ).fetchall()
    return [r[0] for r in rows]


def lexical_stats(conn: psycopg.Connection, tenant_id: str, terms: Sequence[str]) -> LexicalStats:
    row = conn.execute(
        "SELECT chunk_count, total_length, impact_k1, impact_b, impact_avgdl FROM lexical_stats"
        " WHERE tenant_id = %s",
        [tenant_id],
    ).fetchone()
    df: dict[str, int] = dict(
        conn.execute(
            "SELECT term, df FROM lexical_terms WHERE tenant_id = %s AND term = ANY(%s::text[]) AND df > 0",
            [tenant_id, list(terms)],
        ).fetchall()
    )
    return _stats(row, df)


def query_statistics(conn: psycopg.Connection, tenant_id: str, query: str) -> tuple[list[str], LexicalStats]:
    """`query_lexemes` and `lexical_stats` of them in one round trip (a query's first two steps)."""
    row = conn.execute(
        "WITH q AS (SELECT coalesce(array_agg(lexeme), '{}'::text[]) AS lexemes"
        "           FROM unnest(to_tsvector(%(cfg)s::regconfig, %(query)s)))"
        " SELECT q.lexemes, s.chunk_count, s.total_length, s.impact_k1, s.impact_b, s.impact_avgdl, d.terms, d.dfs"
        " FROM q LEFT JOIN lexical_stats s ON s.tenant_id = %(tenant)s"
        " CROSS JOIN LATERAL (SELECT coalesce(array_agg(t.term), '{}'::text[]) AS terms,"
        "                            coalesce(array_agg(t.df), '{}'::int[]) AS dfs"
        "   FROM lexical_terms t WHERE t.tenant_id = %(tenant)s AND t.term = ANY(q.lexemes) AND t.df > 0) d",
        {"cfg": lexical_analysis.TS_CONFIG, "query": query, "tenant": tenant_id},
    ).fetchone()
    assert row is not None  # an aggregate without GROUP BY always answers one row
    stats = _stats(None if row[1] is None else row[1:6], dict(zip(row[6], row[7], strict=True)))
    return list(row[0]), stats


def _stats(row: Sequence[Any] | None, df: dict[str, int]) -> LexicalStats:
    """LexicalStats from a lexical_stats row (None: the tenant has no chunks) and the terms' frequencies."""
    n, total = (int(row[0]), int(row[1])) if row else (0, 0)
    impact = (float(row[2]), float(row[3]), None if row[4] is None else float(row[4])) if row else (1.2, 0.75, None)
    return LexicalStats(
        chunk_count=n, avg_length=(total / n) if n else 0.0, df=df,
        impact_k1=impact[0], impact_b=impact[1], impact_avgdl=impact[2],
    )


# A term's postings as read: chunk ids and impacts, highest impact first (ties: highest chunk id first).
Postings = tuple[np.ndarray, np.ndarray]


def read_postings(
    conn: psycopg.Connection,
    tenant_id: str,
    cursors: Mapping[str, tuple[float, int]],
    depth: int | Mapping[str, int],
) -> dict[str, Postings]:
    """For each term, its next `depth` (or `depth[term]`) postings after its cursor, highest impact first:
    (chunk ids as int64, impacts as float64).

    A cursor is the (impact, chunk id) of the last posting already read (`POSTINGS_START` for none);
    each list is one backward index-only range scan of the primary key (migration 0011), all lists in one
    round trip. Each list comes back packed (int8send/float4send concatenated into one bytea): turning
    thousands of rows into Python tuples cost more than the database took to read them.
    """
    if not cursors:
        return {}
    terms = list(cursors)
    rows = conn.execute(
        "SELECT q.term, p.ids, p.imps"
        " FROM unnest(%(terms)s::text[], %(imps)s::float8[], %(ids)s::bigint[], %(depths)s::int[])"
        "   AS q(term, imp, cid, depth)"
        " CROSS JOIN LATERAL (SELECT"
        "   string_agg(int8send(s.chunk_id), ''::bytea ORDER BY s.impact DESC, s.chunk_id DESC) AS ids,"
        "   string_agg(float4send(s.impact), ''::bytea ORDER BY s.impact DESC, s.chunk_id DESC) AS imps"
        "   FROM (SELECT chunk_id, impact FROM lexical_postings p"
        "     WHERE p.tenant_id = %(tenant)s AND p.term = q.term AND (p.impact, p.chunk_id) < (q.imp::real, q.cid)"
        "     ORDER BY p.impact DESC, p.chunk_id DESC LIMIT q.depth) s) p",
        {
            "terms": terms, "imps": [cursors[t][0] for t in terms], "ids": [cursors[t][1] for t in terms],
            "depths": [int(depth if isinstance(depth, int) else depth[t]) for t in terms], "tenant": tenant_id,
        },
    ).fetchall()
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
    out: dict[str, Postings] = dict.fromkeys(terms, empty)
    for term, ids, imps in rows:
        if ids is not None:
            out[term] = (np.frombuffer(ids, dtype=">i8").astype(np.int64),
                         np.frombuffer(imps, dtype=">f4").astype(np.float64))
    return out


def chunk_ids_in_scope(conn: psycopg.Connection, tenant_id: str, scope: ChunkScope, *, cap: int) -> np.ndarray | None:
    """Sorted ids of the tenant's chunks that the scope admits, or None when more than `cap` do.

    A metadata filter is answered by the GIN index on `metadata` (jsonb_path_ops, migration 0001); the ids
    come back packed in one bytea, as in read_postings."""
    filters, params = scope.clauses()
    row = conn.execute(
        sql.SQL("SELECT count(*), string_agg(int8send(s.id), ''::bytea ORDER BY s.id) FROM"
                " (SELECT c.id FROM chunks c WHERE c.tenant_id = %(tenant)s{filters} LIMIT %(cap)s) s").format(
            filters=filters),
        {**params, "tenant": tenant_id, "cap": int(cap) + 1},
    ).fetchone()
    if row is None or int(row[0]) > cap:
        return None
    return np.frombuffer(row[1], dtype=">i8").astype(np.int64) if row[1] is not None else np.zeros(0, dtype=np.int64)


def document_ids_with_prefix(conn: psycopg.Connection, tenant_id: str, prefix: str) -> list[str]:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute(
        "SELECT id FROM documents WHERE tenant_id = %s AND source_key LIKE %s AND status = 'ready'",
        [tenant_id, escaped + "%"],
    ).fetchall()
    return [str(r[0]) for r in rows]


def _tsquery_any(terms: Sequence[str]) -> str:
    # Each lexeme quoted per tsquery syntax ('' and \\ escaped) and cast with ::tsquery: no operator in
    # user text can take effect, and lexemes are matched as stored (to_tsquery would stem them again).
    quoted = ("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms)
    return " | ".join(quoted)


def _bm25(
    conn: psycopg.Connection,
    tenant_id: str,
    idf: Mapping[str, float],
    candidates: sql.Composable,
    cand_params: dict[str, object],
    scope: ChunkScope,
    *,
    limit: int | None,
    k1: float,
    b: float,
    avg_length: float,
) -> list[tuple[int, float]]:
    filters, params = scope.clauses()
    query = sql.SQL(
        "WITH q(term, idf) AS (SELECT * FROM unnest(%(terms)s::text[], %(idfs)s::float8[])),"
        # chunk_search: the tenant-bound view that lets @@ use the GIN index (migration 0002).
        # setweight + ts_filter keep only the query's lexemes (in C), so the SQL-level unnest below
        # touches a handful of entries per candidate instead of its whole tsvector.
        " cand AS (SELECT c.id, ts_filter(setweight(c.lexemes, 'A', %(terms)s::text[]), '{{a}}') AS qv,"
        "   c.lexeme_count FROM chunk_search c"
        "   WHERE c.tenant_id = %(tenant)s AND {candidates}{filters})"
        " SELECT cand.id, sum(q.idf * t.tf * (%(k1)s + 1)"
        "   / (t.tf + %(k1)s * (1 - %(b)s + %(b)s * cand.lexeme_count / %(avgdl)s))) AS score"
        " FROM cand CROSS JOIN LATERAL unnest(cand.qv) u"
        " JOIN q ON q.term = u.lexeme"
        " CROSS JOIN LATERAL (SELECT coalesce(array_length(u.positions, 1), 1)::float8 AS tf) t"
        " GROUP BY cand.id ORDER BY score DESC, cand.id{limit}"
    ).format(
        candidates=candidates, filters=filters,
        limit=sql.SQL(" LIMIT %(limit)s") if limit is not None else sql.SQL(""),
    )
    params.update(cand_params)
    params.update(
        terms=list(idf), idfs=[float(v) for v in idf.values()], tenant=tenant_id,
        k1=float(k1), b=float(b), avgdl=float(avg_length), limit=None if limit is None else int(limit),
    )
    return [(int(r[0]), float(r[1])) for r in conn.execute(query, params).fetchall()]


def bm25_search(
    conn: psycopg.Connection,
    tenant_id: str,
    idf: Mapping[str, float],
    match_terms: Sequence[str],
    scope: ChunkScope,
    *,
    limit: int,
    k1: float,
    b: float,
    avg_length: float,
) -> list[tuple[int, float]]:
    """Top `limit` (chunk id, BM25 score) among chunks containing any of `match_terms`.

    Candidates come from the GIN index (through the `chunk_search` view; see migration 0002); each is
    scored on every term in `idf` with tf taken from its
    tsvector positions and its length from `lexeme_count`.
    """
    if not match_terms or avg_length <= 0:
        return []
    return _bm25(
        conn, tenant_id, idf, sql.SQL("c.lexemes @@ %(tsq)s::tsquery"), {"tsq": _tsquery_any(match_terms)},
        scope, limit=limit, k1=k1, b=b, avg_length=avg_length,
    )


def bm25_score(
    conn: psycopg.Connection,
    tenant_id: str,
    idf: Mapping[str, float],
    chunk_ids: Sequence[int],
    scope: ChunkScope,
    *,
    k1: float,
    b: float,
    avg_length: float,
) -> list[tuple[int, float]]:
    """Exact BM25 scores of the given chunks (those the scope admits and holding a query term), best first."""
    if not chunk_ids or avg_length <= 0:
        return []
    return _bm25(
        conn, tenant_id, idf, sql.SQL("c.id = ANY(%(ids)s::bigint[])"), {"ids": list(chunk_ids)},
        scope, limit=None, k1=k1, b=b, avg_length=avg_length,
    )


def dense_statement(model: str, scope: ChunkScope, dimensions: int | None = None, *, side: bool = False
                    ) -> tuple[sql.Composed, dict[str, object]]:
    """The nearest-neighbour query, written so the planner can prove the model's partial HNSW index applies:
    the embedding cast to the model's dimension (`halfvec` above 2,000, stratus.db.vector_index) exactly
    as the index was built. `dimensions`: the query vector's; by default the one the model id names.

    It takes `fetch` candidates from the index; dense_search() sorts them by their exact distance and keeps
    the `limit` asked for. The sort is not left to SQL: the planner treats the index's output as already
    in distance order (an outer ORDER BY becomes an incremental sort on a "presorted" key that stops after
    `limit` rows, even through a MATERIALIZED CTE), which a relaxed-order scan does not guarantee.

    `side`: the model's vectors are in chunk_embeddings (a model other than the deployment's, migration
    0015); the scope's filters then apply to the joined chunk row."""
    named = DENSE_INDEXES.get(model) or model_dimensions(model)
    dims = dimensions or named
    if dims is None or (named is not None and named != dims):
        raise Unsupported(f"no vector index for embedding model {model!r} at {dims} dimensions",
                          field="embedding_model")
    filters, params = scope.clauses()
    qvec = sql.SQL("%(qvec)s::{t}({d})").format(t=sql.SQL(vector_type(dims)), d=sql.SQL(str(dims)))
    if side:
        vec = vector_expression("e.embedding", dims)
        return sql.SQL(
            "SELECT e.chunk_id, {vec} <=> {q} AS distance FROM chunk_embeddings e"
            " JOIN chunks c ON c.id = e.chunk_id"
            " WHERE e.embedding_model = {model} AND e.tenant_id = %(tenant)s AND c.tenant_id = %(tenant)s{filters}"
            " ORDER BY {vec} <=> {q} LIMIT %(fetch)s"
        ).format(vec=vec, q=qvec, model=sql.Literal(model), filters=filters), params
    vec = vector_expression("c.embedding", dims)
    query = sql.SQL(
        "SELECT c.id, {vec} <=> {q} AS distance FROM chunks c"
        " WHERE c.embedding_model = {model} AND c.tenant_id = %(tenant)s{filters}"
        " ORDER BY {vec} <=> {q} LIMIT %(fetch)s"
    ).format(vec=vec, q=qvec, model=sql.Literal(model), filters=filters)
    return query, params


@dataclass(frozen=True)
class HnswScan:
    """How a dense query walks the HNSW index (pgvector's session settings, set per transaction).

    ef_search: the candidate list per pass; iterative_scan: 'relaxed_order' (keep scanning until enough
    rows pass the filters, emitted roughly by distance), 'strict_order' (the same, exactly by distance) or
    'off'; max_scan_tuples: where an iterative scan gives up; fetch: candidates taken from the index
    before the exact re-sort (never fewer than the rows asked for)."""

    ef_search: int = 100
    iterative_scan: str = "relaxed_order"
    max_scan_tuples: int = 20_000
    fetch: int = 50

    def __post_init__(self) -> None:
        if self.iterative_scan not in ("off", "relaxed_order", "strict_order"):
            raise ValueError(f"hnsw iterative_scan {self.iterative_scan!r}")


def dense_search(
    conn: psycopg.Connection,
    tenant_id: str,
    vector: np.ndarray,
    model: str,
    scope: ChunkScope,
    *,
    limit: int,
    scan: HnswScan,
    side: bool = False,
) -> list[tuple[int, float]]:
    """Top `limit` (chunk id, cosine distance), nearest first (ties by id)."""
    query, params = dense_statement(model, scope, int(np.asarray(vector).shape[-1]), side=side)
    # Iterative scans keep walking the graph until enough rows pass the tenant/metadata filters.
    conn.execute(
        "SELECT set_config('hnsw.iterative_scan', %s, true), set_config('hnsw.ef_search', %s, true),"
        " set_config('hnsw.max_scan_tuples', %s, true)",
        [scan.iterative_scan, str(int(scan.ef_search)), str(int(scan.max_scan_tuples))],
    )
    params.update(qvec=np.asarray(vector, dtype=np.float32), tenant=tenant_id, fetch=max(int(limit), int(scan.fetch)))
    rows = [(int(r[0]), float(r[1])) for r in conn.execute(query, params).fetchall()]
    rows.sort(key=lambda r: (r[1], r[0]))  # relaxed order: the exact order over every candidate
    return rows[: int(limit)]


def explain_dense(conn: psycopg.Connection, tenant_id: str, model: str, scope: ChunkScope, *,
                  side: bool = False) -> str:
    """EXPLAIN of the dense query (tests and operators check that the HNSW index is used)."""
    dims = DENSE_INDEXES.get(model) or model_dimensions(model)
    query, params = dense_statement(model, scope, dims, side=side)
    params.update(qvec=np.full(dims or 1, 0.05, dtype=np.float32), tenant=tenant_id, fetch=10)
    rows = conn.execute(sql.SQL("EXPLAIN ") + query, params).fetchall()
    return "\n".join(r[0] for r in rows)


def fetch_chunks(conn: psycopg.Connection, tenant_id: str, chunk_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Chunks with their document's source key, by id."""
    if not chunk_ids:
        return {}
    cur = conn.execute(
        "SELECT c.id AS chunk_id, c.document_id::text AS document_id, d.source_key, c.document_version,"
        " c.text, c.title, c.heading_path, c.page FROM chunks c JOIN documents d ON d.id = c.document_id"
        " WHERE c.tenant_id = %s AND d.tenant_id = %s AND c.id = ANY(%s::bigint[])",
        [tenant_id, tenant_id, list(chunk_ids)],
    )
    names = [d.name for d in cur.description or []]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}
