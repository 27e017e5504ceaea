"""BM25 over the tenant's own corpus statistics (N, average length, document frequencies).

Scoring is Okapi BM25 with the Lucene idf, ln(1 + (N - df + 0.5) / (df + 0.5)), which never goes
negative for terms in more than half the chunks:

    score(d) = sum_t idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

Impact postings (the default; migration 0011, docs/retrieval.md): each (term, chunk) posting stores the
term's tf part ("impact") at the tenant's reference parameters (k1, b, avgdl_ref), ordered by impact.
The search reads each query term's list from the top in growing slices, scores every chunk it meets
exactly (current N, df, avgdl, from the chunk's own tsvector) and stops when the k-th score reaches the
sum over terms of idf(t) * (the last impact read for t) * max(1, avgdl / avgdl_ref): no unread chunk can
score more (Fagin's threshold algorithm; the factor bounds how much a stored impact can have grown since
it was written, as the average length moved). The answer is then the exact BM25 top k (`exact=True`).

The GIN path (the fallback: a document-id scope, k1/b settings other than the postings', a tenant without
postings, or a read that would pass `max_postings`): candidates are the chunks containing the query's
rarest terms, taken in order of document frequency until `max_postings` postings; the remaining (common)
terms still add to every candidate's score. A chunk that contains only dropped terms scores below
sum(idf * (k1 + 1)) over them, so when the last kept score reaches that bound the top list is provably
the exact BM25 top list (`exact=True`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stratus.db import chunks as chunk_store
from stratus.db.chunks import ChunkScope


@dataclass(frozen=True)
class LexicalResult:
    hits: list[tuple[int, float]]  # (chunk id, BM25 score), best first
    exact: bool  # False: chunks holding only the very common query terms were not scored


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


# The first slice read from each term's postings; each further round reads GROWTH times more.
FIRST_DEPTH = 32
GROWTH = 4
# Rounding slack: impacts are stored as float4 (relative error < 6e-8).
_SLACK = 1.0 + 1e-6


@dataclass(frozen=True)
class ImpactPlan:
    """What the threshold algorithm needs besides the postings."""

    weights: dict[str, float]  # idf per query term present in the corpus
    drift: float  # max(1, avgdl / avgdl_ref): how much any stored impact may have grown since written


def threshold(plan: ImpactPlan, last_impact: dict[str, float | None]) -> float:
    """Upper bound of the score of a chunk met in none of the lists read so far.

    `last_impact[t]` is the last impact read from t's list, or None once the list is exhausted.
    """
    return sum(
        plan.weights[t] * imp * plan.drift * _SLACK for t, imp in last_impact.items() if imp is not None
    )


def top_k(scores: dict[int, float], limit: int) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def impact_search(
    conn: chunk_store.Connection,
    tenant_id: str,
    stats: chunk_store.LexicalStats,
    weights: dict[str, float],
    scope: ChunkScope,
    *,
    limit: int,
    k1: float,
    b: float,
    max_postings: int,
) -> LexicalResult | None:
    """Exact BM25 top `limit` by the threshold algorithm; None when it would read over `max_postings`."""
    assert stats.impact_avgdl is not None
    plan = ImpactPlan(weights, max(1.0, stats.avg_length / stats.impact_avgdl))
    cursors: dict[str, tuple[float, int]] = {t: chunk_store.POSTINGS_START for t in weights}
    last: dict[str, float | None] = {t: None for t in weights}
    seen: set[int] = set()
    scores: dict[int, float] = {}
    depth, read = FIRST_DEPTH, 0
    while cursors:
        lists = chunk_store.read_postings(conn, tenant_id, cursors, depth)
        fresh: list[int] = []
        for term, postings in lists.items():
            read += len(postings)
            if len(postings) < depth:  # exhausted: every chunk holding the term has been met
                del cursors[term]
                last[term] = None
            if postings:
                cid, imp = postings[-1]
                if term in cursors:
                    cursors[term] = (imp, cid)
                    last[term] = imp
            for cid, _ in postings:
                if cid not in seen:
                    seen.add(cid)
                    fresh.append(cid)
        scores.update(
            chunk_store.bm25_score(conn, tenant_id, weights, fresh, scope, k1=k1, b=b, avg_length=stats.avg_length)
        )
        best = top_k(scores, limit)
        bound = threshold(plan, last)
        if not cursors or (len(best) == limit and best[-1][1] >= bound):
            return LexicalResult(best, True)
        if read + depth * GROWTH * len(cursors) > max_postings:
            return None
        depth *= GROWTH
    return LexicalResult(top_k(scores, limit), True)


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
    terms = chunk_store.query_lexemes(conn, query)
    if not terms:
        return LexicalResult([], True)
    stats = chunk_store.lexical_stats(conn, tenant_id, terms)
    if stats.chunk_count == 0 or not stats.df:
        return LexicalResult([], True)
    weights = {t: idf(stats.chunk_count, d) for t, d in stats.df.items()}
    if impacts and uses_impacts(stats, scope, k1=k1, b=b):
        result = impact_search(
            conn, tenant_id, stats, weights, scope, limit=limit, k1=k1, b=b, max_postings=max_postings
        )
        if result is not None:
            return result
    kept, dropped = plan_terms(stats.df, max_postings)
    hits = chunk_store.bm25_search(
        conn, tenant_id, weights, kept, scope, limit=limit, k1=k1, b=b, avg_length=stats.avg_length
    )
    bound = sum(weights[t] * (k1 + 1) for t in dropped)
    exact = not dropped or (len(hits) == limit and hits[-1][1] >= bound)
    return LexicalResult(hits, exact)
