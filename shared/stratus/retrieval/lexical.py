"""BM25 over the tenant's own corpus statistics (N, average length, document frequencies).

Scoring is Okapi BM25 with the Lucene idf, ln(1 + (N - df + 0.5) / (df + 0.5)), which never goes
negative for terms in more than half the chunks:

    score(d) = sum_t idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

Common terms: candidates are the chunks containing the query's rarest terms, taken in order of document
frequency until `max_postings` postings; the remaining (common) terms still add to every candidate's
score. A chunk that contains only dropped terms scores below sum(idf * (k1 + 1)) over them, so when the
last kept score reaches that bound the top list is provably the exact BM25 top list (`exact=True`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stratus.db import chunks as chunk_store
from stratus.db.chunks import ChunkScope
from stratus.lexical_analysis import query_terms, query_text


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
) -> LexicalResult:
    terms = chunk_store.query_lexemes(conn, query_text(query))
    if not terms:
        return LexicalResult([], True)
    stats = chunk_store.lexical_stats(conn, tenant_id, terms)
    if stats.chunk_count == 0 or not stats.df:
        return LexicalResult([], True)
    df = query_terms(stats.df)
    weights = {t: idf(stats.chunk_count, d) for t, d in df.items()}
    kept, dropped = plan_terms(df, max_postings)
    hits = chunk_store.bm25_search(
        conn, tenant_id, weights, kept, scope, limit=limit, k1=k1, b=b, avg_length=stats.avg_length
    )
    bound = sum(weights[t] * (k1 + 1) for t in dropped)
    exact = not dropped or (len(hits) == limit and hits[-1][1] >= bound)
    return LexicalResult(hits, exact)
