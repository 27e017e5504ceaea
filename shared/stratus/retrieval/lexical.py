"""BM25 over the tenant's own corpus statistics (N, average length, document frequencies).

Scoring is Okapi BM25 with the Lucene idf, ln(1 + (N - df + 0.5) / (df + 0.5)), which never goes
negative for terms in more than half the chunks:

    score(d) = sum_t idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

Impact postings (the default; migration 0011, docs/retrieval.md): each (term, chunk) posting stores the
term's tf part ("impact") at the tenant's reference parameters (k1, b, avgdl_ref), in impact order. The
search reads each query term's list from the top in growing slices and bounds every chunk it meets from
the lists alone (`impact_search`, after Fagin's NRA): a stored impact can have moved since it was written
only by the factor avgdl / avgdl_ref (or its inverse), so the bounds stay valid as the corpus changes
while idf and avgdl are always the current ones. When the k-th best lower bound reaches the bound of
every chunk not met and the upper bounds of all but a few chunks met, those few are scored exactly from
their tsvectors: the exact BM25 top k (`exact=True`). A query that does not settle within `max_postings`
postings (only very common terms) returns the best-bounded chunks met, scored exactly, with
`exact=False`. A metadata scope is decided on the chunk row, so under one every chunk met is scored
(`impact_search_scored`, Fagin's threshold algorithm) and, unsettled at the budget, the GIN path answers.

The GIN path (for a document-id scope, k1/b settings other than the postings', a tenant without
postings yet, or a metadata-scoped read past `max_postings`): candidates are the chunks containing the query's
rarest terms, taken in order of document frequency until `max_postings` postings; the remaining (common)
terms still add to every candidate's score. A chunk that contains only dropped terms scores below
sum(idf * (k1 + 1)) over them, so when the last kept score reaches that bound the top list is provably
the exact BM25 top list (`exact=True`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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


# The first slice read from each term's postings; each further round reads GROWTH times more.
FIRST_DEPTH = 128
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


def impact_search_scored(
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
    """Exact BM25 top `limit` by the threshold algorithm with random access (each chunk met is scored
    from its tsvector); for scopes that only the chunk row can decide. None past `max_postings`.

    A chunk met in some lists is scored exactly only if its upper bound (its impacts in the lists it was
    met in, the lists' current bounds elsewhere) can still beat the k-th exact score; bounds only fall
    and the k-th score only rises, so a chunk set aside once never needs scoring later.
    """
    assert stats.impact_avgdl is not None
    plan = ImpactPlan(weights, max(1.0, stats.avg_length / stats.impact_avgdl))
    cursors: dict[str, tuple[float, int]] = {t: chunk_store.POSTINGS_START for t in weights}
    last: dict[str, float | None] = {t: None for t in weights}
    met: dict[int, dict[str, float]] = {}  # unscored chunks: their impact per list they were met in
    done: set[int] = set()  # scored, or set aside for good
    scores: dict[int, float] = {}
    depth, read = FIRST_DEPTH, 0
    while True:
        lists = chunk_store.read_postings(conn, tenant_id, cursors, depth)
        for term, postings in lists.items():
            read += len(postings)
            if len(postings) < depth:  # exhausted: every chunk holding the term has been met
                del cursors[term]
                last[term] = None
            elif postings:
                cursors[term] = (postings[-1][1], postings[-1][0])
                last[term] = postings[-1][1]
            for cid, imp in postings:
                if cid not in done:
                    met.setdefault(cid, {})[term] = imp
        _score_candidates(conn, tenant_id, plan, weights, scope, met, done, scores, last,
                          limit=limit, k1=k1, b=b, avg_length=stats.avg_length)
        unseen = threshold(plan, last)
        best = top_k(scores, limit)
        kth = best[-1][1] if len(best) == limit else 0.0
        if not cursors or (len(best) == limit and kth >= unseen):
            return LexicalResult(best, True)
        if read + depth * GROWTH * len(cursors) > max_postings:
            return None
        depth *= GROWTH


# Candidates scored per round trip, best upper bound first.
SCORE_BATCH = 64


def _score_candidates(
    conn: chunk_store.Connection,
    tenant_id: str,
    plan: ImpactPlan,
    weights: dict[str, float],
    scope: ChunkScope,
    met: dict[int, dict[str, float]],
    done: set[int],
    scores: dict[int, float],
    last: dict[str, float | None],
    *,
    limit: int,
    k1: float,
    b: float,
    avg_length: float,
) -> None:
    """Score, best bound first, every met chunk whose upper bound can still reach the top `limit`."""
    factor = plan.drift * _SLACK
    rest = {t: plan.weights[t] * imp * factor for t, imp in last.items() if imp is not None}

    def upper(imps: dict[str, float]) -> float:
        return sum(weights[t] * imp * factor for t, imp in imps.items()) + sum(
            v for t, v in rest.items() if t not in imps
        )

    ranked = sorted(((upper(imps), cid) for cid, imps in met.items()), reverse=True)
    best = top_k(scores, limit)
    kth = best[-1][1] if len(best) == limit else 0.0
    i = 0
    while i < len(ranked):
        if len(best) == limit and ranked[i][0] < kth:
            break  # nobody from here on can enter the top list, now or later
        batch = [cid for _, cid in ranked[i:i + SCORE_BATCH]]
        i += len(batch)
        scores.update(
            chunk_store.bm25_score(conn, tenant_id, weights, batch, scope, k1=k1, b=b, avg_length=avg_length)
        )
        best = top_k(scores, limit)
        kth = best[-1][1] if len(best) == limit else 0.0
    # Every met chunk is now scored or set aside (its bound is below the k-th score, and only falls).
    done.update(met)
    met.clear()


# Most chunks scored from their tsvectors once the lists have narrowed the top down (else read deeper).
MAX_EXACT = 200


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
    """BM25 top `limit` from the impact lists, exact unless reading `max_postings` postings did not settle it.

    The lists alone bound every chunk met (no random access, as in Fagin's NRA): its impacts in the lists
    it was met in, scaled by how far avgdl has moved since they were written (`lo`..`hi`), plus each other
    list's last impact as the most it can add there. Once the k-th best lower bound reaches both the
    bound of every chunk not met at all and the upper bounds of all but a few (`MAX_EXACT`) chunks met,
    those few are scored exactly from their tsvectors and the best `limit` of them are the exact top.
    Past the budget with the top still open, the best-bounded chunks met are scored and the answer says
    it is not exact (the GIN path would cost far more for the same kind of query). A metadata scope can
    only be decided on the chunk row, so it takes `impact_search_scored`.
    """
    assert stats.impact_avgdl is not None
    if scope.metadata:
        return impact_search_scored(conn, tenant_id, stats, weights, scope, limit=limit, k1=k1, b=b,
                                    max_postings=max_postings)
    ratio = stats.avg_length / stats.impact_avgdl
    lo, hi = min(1.0, ratio) / _SLACK, max(1.0, ratio) * _SLACK
    terms = list(weights)
    w = np.array([weights[t] for t in terms], dtype=np.float64)
    cursors: dict[str, tuple[float, int]] = {t: chunk_store.POSTINGS_START for t in terms}
    last = np.zeros(len(terms))
    ids_parts: list[np.ndarray] = []
    contrib_parts: list[np.ndarray] = []
    bit_parts: list[np.ndarray] = []
    depths = {t: FIRST_DEPTH for t in terms}
    reading = dict(cursors)
    read = 0
    while True:
        lists = chunk_store.read_postings(conn, tenant_id, reading, {t: depths[t] for t in reading})
        for i, term in enumerate(terms):
            postings = lists.get(term)
            if postings is None:
                continue
            read += len(postings)
            if len(postings) < depths[term]:
                del cursors[term]
                last[i] = 0.0
            else:
                cursors[term] = (postings[-1][1], postings[-1][0])
                last[i] = postings[-1][1]
            if postings:
                arr = np.array(postings, dtype=np.float64)
                ids_parts.append(arr[:, 0].astype(np.int64))
                contrib_parts.append(w[i] * arr[:, 1])
                bit_parts.append(np.full(len(postings), 1 << i, dtype=np.int64))
        if not ids_parts:
            return LexicalResult([], True)
        uniq, inv = np.unique(np.concatenate(ids_parts), return_inverse=True)
        known = np.bincount(inv, weights=np.concatenate(contrib_parts), minlength=len(uniq))
        mask = np.zeros(len(uniq), dtype=np.int64)
        np.bitwise_or.at(mask, inv, np.concatenate(bit_parts))
        bound = w * last * hi  # the most an unread posting of each list can add (0 once exhausted)
        missing = np.zeros(len(uniq))
        for i in range(len(terms)):
            if bound[i] > 0:
                missing += bound[i] * (((mask >> i) & 1) == 0)
        lower, upper = known * lo, known * hi + missing
        theta = float(np.partition(lower, len(lower) - limit)[len(lower) - limit]) if len(lower) >= limit else 0.0
        unseen = float(bound.sum())
        live = upper >= theta
        # Read on only in the lists whose bound still matters most (the rare terms' lists end early; a
        # common term's bound is small and its list long), each a slice GROWTH times deeper than its last.
        top_bound = float(bound.max())
        reading = {t: cursors[t] for i, t in enumerate(terms) if t in cursors and bound[i] >= top_bound / GROWTH}
        for t in reading:
            depths[t] *= GROWTH
        over_budget = read + sum(depths[t] for t in reading) > max_postings
        certain = not cursors or unseen <= theta
        if certain and (not cursors or int(live.sum()) <= MAX_EXACT or over_budget) or over_budget:
            order = np.argsort(-upper[live], kind="stable")
            ranked = [(float(u), int(c)) for u, c in zip(upper[live][order], uniq[live][order], strict=True)]
            if not certain:
                # Out of budget with a chunk not yet met possibly in the top (a query of only very common
                # terms): the best-bounded chunks met so far, scored exactly, and said to be approximate.
                ranked = ranked[:MAX_EXACT]
            return LexicalResult(_score_ranked(conn, tenant_id, weights, ranked, limit=limit, k1=k1, b=b,
                                               avg_length=stats.avg_length), certain)


def _score_ranked(
    conn: chunk_store.Connection,
    tenant_id: str,
    weights: dict[str, float],
    ranked: list[tuple[float, int]],
    *,
    limit: int,
    k1: float,
    b: float,
    avg_length: float,
) -> list[tuple[int, float]]:
    """Exact scores of (upper bound, chunk) candidates, best bound first, until no bound can enter the top."""
    scores: dict[int, float] = {}
    i = 0
    while i < len(ranked):
        best = top_k(scores, limit)
        if len(best) == limit and ranked[i][0] < best[-1][1]:
            break
        batch = [cid for _, cid in ranked[i:i + max(SCORE_BATCH, 2 * limit)]]
        i += len(batch)
        scores.update(
            chunk_store.bm25_score(conn, tenant_id, weights, batch, ChunkScope(), k1=k1, b=b, avg_length=avg_length)
        )
    return top_k(scores, limit)


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
    terms = chunk_store.query_lexemes(conn, query_text(query))
    if not terms:
        return LexicalResult([], True)
    stats = chunk_store.lexical_stats(conn, tenant_id, terms)
    if stats.chunk_count == 0 or not stats.df:
        return LexicalResult([], True)
    df = query_terms(stats.df)
    weights = {t: idf(stats.chunk_count, d) for t, d in df.items()}
    if impacts and uses_impacts(stats, scope, k1=k1, b=b):
        result = impact_search(
            conn, tenant_id, stats, weights, scope, limit=limit, k1=k1, b=b, max_postings=max_postings
        )
        if result is not None:
            return result
    kept, dropped = plan_terms(df, max_postings)
    hits = chunk_store.bm25_search(
        conn, tenant_id, weights, kept, scope, limit=limit, k1=k1, b=b, avg_length=stats.avg_length
    )
    bound = sum(weights[t] * (k1 + 1) for t in dropped)
    exact = not dropped or (len(hits) == limit and hits[-1][1] >= bound)
    return LexicalResult(hits, exact)
