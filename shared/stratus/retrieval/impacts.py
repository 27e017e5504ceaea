"""Exact BM25 top k from the impact postings (migration 0011), read per query term in impact order.

Each (term, chunk) posting stores the term's tf part ("impact") at the tenant's reference parameters
(k1, b, avgdl_ref), in impact order. `impact_search` reads each query term's list from the top in growing
slices and bounds every chunk it meets from the lists alone (after Fagin's NRA): a stored impact can have
moved since it was written only by the factor avgdl / avgdl_ref (or its inverse), so the bounds stay valid
as the corpus changes while idf and avgdl are always the current ones. When the k-th best lower bound
reaches the bound of every chunk not met and the upper bounds of all but a few chunks met, those few are
scored exactly from their tsvectors: the exact BM25 top k (`exact=True`). A query that does not settle
within `max_postings` postings (only very common terms) returns the best-bounded chunks met, scored
exactly, with `exact=False`.

A metadata scope is decided on the chunk row. When it admits few chunks, their ids are read once and the
lists are filtered by them as they are read (`allowed`), so the same search stays exact without touching a
chunk row per posting; a scope that admits many chunks takes `impact_search_scored` (Fagin's threshold
algorithm: every chunk met is scored from its row, the scope checked there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stratus.db import chunks as chunk_store
from stratus.db.chunks import ChunkScope


@dataclass(frozen=True)
class LexicalResult:
    hits: list[tuple[int, float]]  # (chunk id, BM25 score), best first
    exact: bool  # False: chunks holding only the very common query terms were not scored


# The first slice read from each term's postings; each further round reads GROWTH times more. At 100k
# chunks 512 took 2.5 rounds a query where 128 took 3.7, 0.5-1 ms less per query (docs/retrieval.md).
FIRST_DEPTH = 512
GROWTH = 4
# Most chunks scored from their tsvectors once the lists have narrowed the top down (else read deeper).
MAX_EXACT = 200
# Candidates scored per round trip, best upper bound first.
SCORE_BATCH = 64
# Rounding slack: impacts are stored as float4 (relative error < 6e-8).
_SLACK = 1.0 + 1e-6


@dataclass(frozen=True)
class ImpactPlan:
    """What the threshold algorithm needs besides the postings."""

    weights: dict[str, float]  # idf per query term present in the corpus
    drift: float  # max(1, avgdl / avgdl_ref): how much any stored impact may have grown since written


@dataclass(frozen=True)
class LexicalQuery:
    """One tenant's BM25 query as the impact searches read it: the corpus statistics, each term's idf, the
    scope, and the best `limit` chunks wanted from at most `max_postings` postings."""

    tenant_id: str
    stats: chunk_store.LexicalStats
    weights: dict[str, float]  # idf per query term present in the corpus
    scope: ChunkScope
    limit: int
    k1: float
    b: float
    max_postings: int

    def score(self, conn: chunk_store.Connection, chunk_ids: list[int]) -> list[tuple[int, float]]:
        """Exact BM25 of these chunks (those in the scope), from their tsvectors."""
        return chunk_store.bm25_score(conn, self.tenant_id, self.weights, chunk_ids, self.scope, k1=self.k1,
                                      b=self.b, avg_length=self.stats.avg_length)


def first_depth(terms: int, max_postings: int) -> int:
    """The first slice of each list: FIRST_DEPTH, less where the budget could not pay for it."""
    return max(1, min(FIRST_DEPTH, max_postings // max(1, terms)))


def threshold(plan: ImpactPlan, last_impact: dict[str, float | None]) -> float:
    """Upper bound of the score of a chunk met in none of the lists read so far.

    `last_impact[t]` is the last impact read from t's list, or None once the list is exhausted.
    """
    return sum(
        plan.weights[t] * imp * plan.drift * _SLACK for t, imp in last_impact.items() if imp is not None
    )


def top_k(scores: dict[int, float], limit: int) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def impact_search(conn: chunk_store.Connection, query: LexicalQuery, *,
                  allowed: np.ndarray | None = None) -> LexicalResult | None:
    """BM25 top `limit` from the impact lists, exact unless reading `max_postings` postings did not settle it.

    The lists alone bound every chunk met (no random access, as in Fagin's NRA): its impacts in the lists
    it was met in, scaled by how far avgdl has moved since they were written (`lo`..`hi`), plus each other
    list's last impact as the most it can add there. Once the k-th best lower bound reaches both the
    bound of every chunk not met at all and the upper bounds of all but a few (`MAX_EXACT`) chunks met,
    those few are scored exactly from their tsvectors and the best `limit` of them are the exact top.
    Past the budget with the top still open, the best-bounded chunks met are scored and the answer says
    it is not exact (the GIN path would cost far more for the same kind of query).

    `allowed` (sorted chunk ids): only these chunks may be returned (the ids a metadata scope admits);
    postings of other chunks are dropped as they are read, while each list's bound still comes from what
    was read. Unsettled at the budget or cut short at `MAX_EXACT` scorings, a scoped search returns None
    (the caller answers another way, exactly).
    """
    stats, limit, max_postings = query.stats, query.limit, query.max_postings
    assert stats.impact_avgdl is not None
    ratio = stats.avg_length / stats.impact_avgdl
    lo, hi = min(1.0, ratio) / _SLACK, max(1.0, ratio) * _SLACK
    terms = list(query.weights)
    w = np.array([query.weights[t] for t in terms], dtype=np.float64)
    cursors: dict[str, tuple[float, int]] = {t: chunk_store.POSTINGS_START for t in terms}
    last = np.zeros(len(terms))
    ids_parts: list[np.ndarray] = []
    contrib_parts: list[np.ndarray] = []
    term_parts: list[np.ndarray] = []  # which list each posting came from (a chunk is met once per list)
    first = first_depth(len(terms), max_postings)
    depths = dict.fromkeys(terms, first)
    reading = dict(cursors)
    read = 0
    while True:
        lists = chunk_store.read_postings(conn, query.tenant_id, reading, {t: depths[t] for t in reading})
        for i, term in enumerate(terms):
            if term not in lists:
                continue
            ids, imps = lists[term]
            read += len(ids)
            if len(ids) < depths[term]:
                del cursors[term]
                last[i] = 0.0
            else:
                cursors[term] = (float(imps[-1]), int(ids[-1]))
                last[i] = imps[-1]
            if allowed is not None:
                keep = np.isin(ids, allowed)
                ids, imps = ids[keep], imps[keep]
            if len(ids):
                ids_parts.append(ids)
                contrib_parts.append(w[i] * imps)
                term_parts.append(np.full(len(ids), i))
        bound = w * last * hi  # the most an unread posting of each list can add (0 once exhausted)
        unseen = float(bound.sum())
        uniq: np.ndarray
        known: np.ndarray
        missing: np.ndarray
        if ids_parts:
            uniq, inv = np.unique(np.concatenate(ids_parts), return_inverse=True)
            known = np.bincount(inv, weights=np.concatenate(contrib_parts), minlength=len(uniq))
            # A chunk can still gain each bound of the lists it was not met in.
            met_bound = np.bincount(inv, weights=bound[np.concatenate(term_parts)], minlength=len(uniq))
            missing = np.maximum(unseen - met_bound, 0.0)
        else:
            uniq, known, missing = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
        lower, upper = known * lo, known * hi + missing
        theta = float(np.partition(lower, len(lower) - limit)[len(lower) - limit]) if len(lower) >= limit else 0.0
        live = upper >= theta
        # Read on only in the lists whose bound still matters most (the rare terms' lists end early; a
        # common term's bound is small and its list long), each a slice GROWTH times deeper than its last.
        top_bound = float(bound.max()) if len(bound) else 0.0
        reading = {t: cursors[t] for i, t in enumerate(terms) if t in cursors and bound[i] >= top_bound / GROWTH}
        for t in reading:
            depths[t] *= GROWTH
        want, left = sum(depths[t] for t in reading), max_postings - read
        if want > left >= first * len(reading):  # a last round: shallower slices that use up the budget
            for t in reading:  # at least one posting each: a slice of 0 would read as an exhausted list
                depths[t] = max(1, depths[t] * left // want)
            want = sum(depths[t] for t in reading)
        over_budget = read + want > max_postings
        certain = not cursors or unseen <= theta
        if certain and (not cursors or int(live.sum()) <= MAX_EXACT or over_budget) or over_budget:
            if not certain and allowed is not None:
                return None
            order = np.argsort(-upper[live], kind="stable")
            ranked = [(float(u), int(c)) for u, c in zip(upper[live][order], uniq[live][order], strict=True)]
            # At most MAX_EXACT chunks are scored, best bound first. Out of budget with the top still open (a
            # chunk not yet met may belong in it, or too many met ones might), the best-bounded chunks met
            # are scored and the answer says it is not certain.
            # (With every list read to its end there is nothing left to read: all of them are scored.)
            hits, settled = _score_ranked(conn, query, ranked, cap=MAX_EXACT if cursors else len(ranked))
            if allowed is not None and not settled:
                return None  # a filtered query has an exact path (GIN) to fall back on
            return LexicalResult(hits, certain and settled)


def _score_ranked(conn: chunk_store.Connection, query: LexicalQuery, ranked: list[tuple[float, int]], *,
                  cap: int) -> tuple[list[tuple[int, float]], bool]:
    """Exact scores of (upper bound, chunk) candidates, best bound first, until no bound can enter the top
    (settled: True) or `cap` have been scored with some bound still above the k-th score (False)."""
    limit = query.limit
    scores: dict[int, float] = {}
    i = 0
    while i < len(ranked):
        best = top_k(scores, limit)
        if len(best) == limit and ranked[i][0] < best[-1][1]:
            break
        if i >= cap:
            return best, False
        batch = [cid for _, cid in ranked[i:i + min(max(SCORE_BATCH, 2 * limit), cap - i)]]
        i += len(batch)
        scores.update(query.score(conn, batch))
    return top_k(scores, limit), True


def impact_search_scored(conn: chunk_store.Connection, query: LexicalQuery) -> LexicalResult | None:
    """Exact BM25 top `limit` by the threshold algorithm with random access (each chunk met is scored
    from its tsvector); for scopes that only the chunk row can decide. None past `max_postings`.

    A chunk met in some lists is scored exactly only if its upper bound (its impacts in the lists it was
    met in, the lists' current bounds elsewhere) can still beat the k-th exact score; bounds only fall
    and the k-th score only rises, so a chunk set aside once never needs scoring later.
    """
    stats, weights, limit = query.stats, query.weights, query.limit
    assert stats.impact_avgdl is not None
    plan = ImpactPlan(weights, max(1.0, stats.avg_length / stats.impact_avgdl))
    cursors: dict[str, tuple[float, int]] = {t: chunk_store.POSTINGS_START for t in weights}
    last: dict[str, float | None] = dict.fromkeys(weights)
    met: dict[int, dict[str, float]] = {}  # unscored chunks: their impact per list they were met in
    done: set[int] = set()  # scored, or set aside for good
    scores: dict[int, float] = {}
    depth, read = first_depth(len(weights), query.max_postings), 0
    while True:
        lists = chunk_store.read_postings(conn, query.tenant_id, cursors, depth)
        for term, (ids, imps) in lists.items():
            read += len(ids)
            if len(ids) < depth:  # exhausted: every chunk holding the term has been met
                del cursors[term]
                last[term] = None
            elif len(ids):
                cursors[term] = (float(imps[-1]), int(ids[-1]))
                last[term] = float(imps[-1])
            for cid, imp in zip(ids.tolist(), imps.tolist(), strict=True):
                if cid not in done:
                    met.setdefault(cid, {})[term] = imp
        _score_candidates(conn, query, plan, met, done, scores, last)
        unseen = threshold(plan, last)
        best = top_k(scores, limit)
        kth = best[-1][1] if len(best) == limit else 0.0
        if not cursors or (len(best) == limit and kth >= unseen):
            return LexicalResult(best, True)
        if read + depth * GROWTH * len(cursors) > query.max_postings:
            return None
        depth *= GROWTH


def _score_candidates(
    conn: chunk_store.Connection,
    query: LexicalQuery,
    plan: ImpactPlan,
    met: dict[int, dict[str, float]],
    done: set[int],
    scores: dict[int, float],
    last: dict[str, float | None],
) -> None:
    """Score, best bound first, every met chunk whose upper bound can still reach the top `limit`."""
    factor = plan.drift * _SLACK
    rest = {t: plan.weights[t] * imp * factor for t, imp in last.items() if imp is not None}

    def upper(imps: dict[str, float]) -> float:
        return sum(plan.weights[t] * imp * factor for t, imp in imps.items()) + sum(
            v for t, v in rest.items() if t not in imps
        )

    limit = query.limit
    ranked = sorted(((upper(imps), cid) for cid, imps in met.items()), reverse=True)
    best = top_k(scores, limit)
    kth = best[-1][1] if len(best) == limit else 0.0
    i = 0
    while i < len(ranked):
        if len(best) == limit and ranked[i][0] < kth:
            break  # nobody from here on can enter the top list, now or later
        batch = [cid for _, cid in ranked[i:i + SCORE_BATCH]]
        i += len(batch)
        scores.update(query.score(conn, batch))
        best = top_k(scores, limit)
        kth = best[-1][1] if len(best) == limit else 0.0
    # Every met chunk is now scored or set aside (its bound is below the k-th score, and only falls).
    done.update(met)
    met.clear()
