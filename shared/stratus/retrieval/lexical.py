"""BM25 over the tenant's own corpus statistics (N, average length, document frequencies).

Scoring is Okapi BM25 with the Lucene idf, ln(1 + (N - df + 0.5) / (df + 0.5)), which never goes
negative for terms in more than half the chunks:

    score(d) = sum_t idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

Impact postings (the default; migration 0011, docs/retrieval.md) answer exactly through
`stratus.retrieval.impacts`; a metadata scope that admits at most SCOPE_IDS_MAX chunks is read as ids
once and filters the lists as they are read, a wider one scores each chunk met on its row.

The GIN path (for a document-id scope, k1/b settings other than the postings', a tenant without
postings yet, or a metadata-scoped read past `max_postings`): candidates are the chunks containing the query's
rarest terms, taken in order of document frequency until `max_postings` postings; the remaining (common)
terms still add to every candidate's score. A chunk that contains only dropped terms scores below
sum(idf * (k1 + 1)) over them, so when the last kept score reaches that bound the top list is provably
the exact BM25 top list (`exact=True`).
"""

from __future__ import annotations

import math

from stratus.db import chunks as chunk_store
from stratus.db.chunks import ChunkScope
from stratus.lexical_analysis import query_terms, query_text
from stratus.retrieval.impacts import LexicalQuery, LexicalResult, impact_search, impact_search_scored

__all__ = ["LexicalResult", "idf", "plan_terms", "search", "uses_impacts"]

# A metadata scope that admits at most this many of the tenant's chunks is turned into their ids once per
# query, and the impact lists are filtered by them as they are read; a wider one scores each chunk met.
# Reading the ids costs a heap row each (~7 us at 100k, a page per row: chunk rows carry their vector),
# scoring a chunk met ~45 us; at 100k a 1-in-10 filter (10k ids, ~75 ms) was no faster read as ids than
# scored (~100 ms p50), so the ids serve the selective filters only (docs/retrieval.md).
SCOPE_IDS_MAX = 5_000


def idf(chunk_count: int, df: int) -> float:
    return math.log(1.0 + (chunk_count - df + 0.5) / (df + 0.5))


def plan_terms(df: dict[str, int], max_postings: int) -> tuple[list[str], list[str]]:
    """Split the query terms into (terms whose chunks are candidates, common terms only scored)."""
    ordered = sorted(df, key=lambda t: (df[t], t))
    kept: list[str] = []
    postings = 0
    for term in ordered:
        if kept and postings + df[term] > max_postings:
            break
        kept.append(term)
        postings += df[term]
    return kept, ordered[len(kept):]


def uses_impacts(stats: chunk_store.LexicalStats, scope: ChunkScope, *, k1: float, b: float) -> bool:
    """Whether the impact postings can answer this query exactly (else the GIN path does)."""
    return (
        stats.impact_avgdl is not None and stats.impact_avgdl > 0 and scope.document_ids is None
        and math.isclose(k1, stats.impact_k1, rel_tol=1e-9) and math.isclose(b, stats.impact_b, rel_tol=1e-9)
    )


def search(
    conn: chunk_store.Connection,
    tenant_id: str,
    query: str,
    scope: ChunkScope,
    *,
    limit: int,
    k1: float,
    b: float,
    max_postings: int,
    impacts: bool = True,
) -> LexicalResult:
    """Top `limit` chunks by BM25; `impacts=False` forces the GIN path (benchmarks compare the two)."""
    terms, stats = chunk_store.query_statistics(conn, tenant_id, query_text(query))
    if not terms:
        return LexicalResult([], True)
    if stats.chunk_count == 0 or not stats.df:
        return LexicalResult([], True)
    df = query_terms(stats.df)
    weights = {t: idf(stats.chunk_count, d) for t, d in df.items()}
    if impacts and uses_impacts(stats, scope, k1=k1, b=b):
        allowed = chunk_store.chunk_ids_in_scope(conn, tenant_id, scope, cap=SCOPE_IDS_MAX) if scope.metadata else None
        if allowed is not None and len(allowed) == 0:
            return LexicalResult([], True)  # the scope admits no chunk
        query_ = LexicalQuery(tenant_id, stats, weights, scope, limit=limit, k1=k1, b=b, max_postings=max_postings)
        if scope.metadata and allowed is None:
            result = impact_search_scored(conn, query_)
        else:
            result = impact_search(conn, query_, allowed=allowed)
        if result is not None:
            return result
    kept, dropped = plan_terms(df, max_postings)
    hits = chunk_store.bm25_search(
        conn, tenant_id, weights, kept, scope, limit=limit, k1=k1, b=b, avg_length=stats.avg_length
    )
    bound = sum(weights[t] * (k1 + 1) for t in dropped)
    exact = not dropped or (len(hits) == limit and hits[-1][1] >= bound)
    return LexicalResult(hits, exact)
