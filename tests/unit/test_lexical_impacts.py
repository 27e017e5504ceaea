"""The threshold algorithm over impact postings (retrieval.lexical) against brute-force BM25, in memory."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable

import numpy as np
import pytest

from stratus.db import chunks as chunk_store
from stratus.db.chunks import ChunkScope, LexicalStats
from stratus.retrieval import impacts, lexical

K1, B = 1.2, 0.75


def _tf_part(tf: int, dl: int, avgdl: float) -> float:
    return tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))


class FakeStore:
    """Chunks as term counters; postings written at a reference avgdl, scored at the current one."""

    def __init__(self, docs: dict[int, Counter[str]], ref_avgdl: float) -> None:
        self.docs = docs
        self.avgdl = sum(sum(c.values()) for c in docs.values()) / len(docs)
        self.postings: dict[str, list[tuple[float, int]]] = {}
        for cid, counts in docs.items():
            dl = sum(counts.values())
            for term, tf in counts.items():
                self.postings.setdefault(term, []).append((float(np.float32(  # stored as float4, like the column
                    _tf_part(tf, dl, ref_avgdl))), cid))
        for plist in self.postings.values():
            plist.sort(reverse=True)
        self.reads = 0

    def read_postings(self, conn, tenant_id, cursors, depth):  # noqa: ANN001 - the chunk_store signature
        out = {}
        for term, cursor in cursors.items():
            d = depth if isinstance(depth, int) else depth[term]
            after = [p for p in self.postings.get(term, []) if p < cursor][:d]
            self.reads += len(after)
            out[term] = (np.array([cid for _, cid in after], dtype=np.int64),
                         np.array([imp for imp, _ in after], dtype=np.float64))
        return out

    def score(self, cid: int, weights: dict[str, float]) -> float:
        counts = self.docs[cid]
        dl = sum(counts.values())
        return sum(w * _tf_part(counts[t], dl, self.avgdl) for t, w in weights.items() if counts[t])

    def bm25_score(self, conn, tenant_id, idf, chunk_ids, scope, *, k1, b, avg_length):  # noqa: ANN001
        assert avg_length == pytest.approx(self.avgdl)
        scored = [(c, self.score(c, dict(idf))) for c in chunk_ids]
        return sorted(((c, s) for c, s in scored if s > 0), key=lambda x: (-x[1], x[0]))


def _corpus(rng: random.Random, n: int, vocab: int, long_from: int | None = None) -> dict[int, Counter[str]]:
    words = [f"w{i}" for i in range(vocab)]
    weights = [1 / (i + 1) for i in range(vocab)]  # Zipf-like: a few very common terms, a long tail
    docs = {}
    for cid in range(1, n + 1):
        length = rng.randint(5, 40) * (3 if long_from is not None and cid >= long_from else 1)
        docs[cid] = Counter(rng.choices(words, weights, k=length))
    return docs


def _served(monkeypatch: pytest.MonkeyPatch, seed: int, n: int, vocab: int, first_depth: int) -> FakeStore:
    """A corpus of n chunks over `vocab` terms (postings at the current avgdl), read and scored by the search."""
    docs = _corpus(random.Random(seed), n, vocab)
    store = FakeStore(docs, ref_avgdl=sum(sum(c.values()) for c in docs.values()) / len(docs))
    monkeypatch.setattr(chunk_store, "read_postings", store.read_postings)
    monkeypatch.setattr(chunk_store, "bm25_score", store.bm25_score)
    monkeypatch.setattr(impacts, "FIRST_DEPTH", first_depth)
    return store


def _query(store: FakeStore, terms: Iterable[str]) -> tuple[dict[str, float], LexicalStats]:
    """The idf weights of `terms` and the tenant statistics a search of them reads."""
    df = Counter(t for c in store.docs.values() for t in c)
    weights = {t: lexical.idf(len(store.docs), df[t]) for t in terms}
    return weights, LexicalStats(chunk_count=len(store.docs), avg_length=store.avgdl,
                                 df={t: df[t] for t in weights}, impact_avgdl=store.avgdl)


def _brute(store: FakeStore, weights: dict[str, float], k: int, allowed: set[int] | None = None
           ) -> list[tuple[int, float]]:
    scored = [(c, store.score(c, weights)) for c in store.docs if allowed is None or c in allowed]
    return sorted(((c, s) for c, s in scored if s > 0), key=lambda x: (-x[1], x[0]))[:k]


def _search(path: str, stats: LexicalStats, weights: dict[str, float], allowed: np.ndarray, *, limit: int = 10,
            max_postings: int = 10**6) -> lexical.LexicalResult | None:
    """The three ways the impact lists answer: unscoped, filtered by a scope's ids, scored on each row."""
    if path == "scored":
        scoped = _lexical_query(stats, weights, ChunkScope(metadata={"all": True}), limit=limit,
                                max_postings=max_postings)
        return impacts.impact_search_scored(None, scoped)
    query = _lexical_query(stats, weights, ChunkScope(), limit=limit, max_postings=max_postings)
    return impacts.impact_search(None, query, allowed=allowed if path == "allowed" else None)


def _lexical_query(stats: LexicalStats, weights: dict[str, float], scope: ChunkScope, *, limit: int = 10,
           max_postings: int = 10**6) -> impacts.LexicalQuery:
    return impacts.LexicalQuery("t", stats, weights, scope, limit=limit, k1=K1, b=B, max_postings=max_postings)


@pytest.mark.parametrize("path", ["lists", "allowed", "scored"])
@pytest.mark.parametrize("drift", [0.5, 1.0, 2.5])
def test_threshold_search_returns_the_exact_bm25_top_k(
    monkeypatch: pytest.MonkeyPatch, drift: float, path: str
) -> None:
    # Given postings written at a reference avgdl that differs from today's (by a factor `drift`)
    rng = random.Random(int(drift * 10))
    docs = _corpus(rng, 400, 300)
    avgdl = sum(sum(c.values()) for c in docs.values()) / len(docs)
    store = FakeStore(docs, ref_avgdl=avgdl / drift)
    monkeypatch.setattr(chunk_store, "read_postings", store.read_postings)
    monkeypatch.setattr(chunk_store, "bm25_score", store.bm25_score)
    monkeypatch.setattr(impacts, "FIRST_DEPTH", 4)
    monkeypatch.setattr(impacts, "GROWTH", 2)
    df = Counter(t for c in docs.values() for t in c)
    # (the "allowed" path: a scope admitting one chunk in three, given as its sorted ids)
    allowed = np.array(sorted(c for c in docs if c % 3 == 0), dtype=np.int64)
    for _ in range(40):
        # When a query of common and rare terms is answered by the threshold algorithm
        terms = rng.sample(sorted(df), rng.randint(1, 6)) + ["w0"]
        weights = {t: lexical.idf(len(docs), df[t]) for t in set(terms)}
        stats = LexicalStats(chunk_count=len(docs), avg_length=avgdl, df={t: df[t] for t in weights},
                             impact_avgdl=avgdl / drift)
        store.reads = 0
        result = _search(path, stats, weights, allowed)
        # Then it is the brute-force top 10 (of the chunks the scope admits), scores included, and certified exact
        assert result is not None and result.exact
        want = _brute(store, weights, 10, set(allowed.tolist()) if path == "allowed" else None)
        assert [c for c, _ in result.hits] == [c for c, _ in want]
        assert [s for _, s in result.hits] == pytest.approx([s for _, s in want])


def test_threshold_search_stops_early_on_a_selective_query(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a corpus whose most common term is in nearly every chunk
    rng = random.Random(3)
    docs = _corpus(rng, 2000, 500)
    avgdl = sum(sum(c.values()) for c in docs.values()) / len(docs)
    store = FakeStore(docs, ref_avgdl=avgdl)
    monkeypatch.setattr(chunk_store, "read_postings", store.read_postings)
    monkeypatch.setattr(chunk_store, "bm25_score", store.bm25_score)
    monkeypatch.setattr(impacts, "FIRST_DEPTH", 128)  # slices small beside this corpus's common term
    df = Counter(t for c in docs.values() for t in c)
    rare = [t for t in df if 3 <= df[t] <= 20][:2]
    weights = {t: lexical.idf(len(docs), df[t]) for t in [*rare, "w0"]}
    stats = LexicalStats(chunk_count=len(docs), avg_length=avgdl, df={t: df[t] for t in weights}, impact_avgdl=avgdl)
    # When it is searched
    result = impacts.impact_search(None, _lexical_query(stats, weights, ChunkScope()))
    # Then it reads far fewer postings than the common term alone holds, and is exact
    assert result is not None and result.exact
    assert store.reads < df["w0"] / 4
    assert [c for c, _ in result.hits] == [c for c, _ in _brute(store, weights, 10)]


@pytest.mark.parametrize("path", ["allowed", "scored"])
def test_a_scoped_search_gives_up_past_the_postings_budget(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    rng = random.Random(5)
    docs = _corpus(rng, 500, 50)
    avgdl = sum(sum(c.values()) for c in docs.values()) / len(docs)
    store = FakeStore(docs, ref_avgdl=avgdl)
    monkeypatch.setattr(chunk_store, "read_postings", store.read_postings)
    # A scope that admits nothing: no top 10 can ever be certified, so the search must hand over
    monkeypatch.setattr(chunk_store, "bm25_score", lambda *a, **k: [])
    monkeypatch.setattr(impacts, "FIRST_DEPTH", 4)
    df = Counter(t for c in docs.values() for t in c)
    weights = {t: lexical.idf(len(docs), df[t]) for t in ("w0", "w1")}
    stats = LexicalStats(chunk_count=len(docs), avg_length=avgdl, df={t: df[t] for t in weights}, impact_avgdl=avgdl)
    assert _search(path, stats, weights, np.zeros(0, dtype=np.int64), max_postings=100) is None


def test_threshold_bound_scales_unread_impacts_by_the_drift() -> None:
    plan = impacts.ImpactPlan({"a": 2.0, "b": 1.0}, drift=1.5)
    assert impacts.threshold(plan, {"a": 1.0, "b": None}) == pytest.approx(3.0, rel=1e-5)
    assert impacts.threshold(plan, {"a": None, "b": None}) == 0.0


def test_stored_impact_bound_holds_for_any_length_when_avgdl_grows() -> None:
    # The drift factor: tf_part(avgdl) <= tf_part(avgdl_ref) * max(1, avgdl / avgdl_ref) for every tf, dl
    for ref, now in ((50.0, 80.0), (80.0, 50.0), (10.0, 300.0)):
        for tf in (1, 2, 7, 40):
            for dl in (1, 10, 100, 1000, 10**6):
                assert _tf_part(tf, dl, now) <= _tf_part(tf, dl, ref) * max(1.0, now / ref) * (1 + 1e-12)


def test_impacts_are_used_only_when_they_can_answer_exactly() -> None:
    stats = LexicalStats(chunk_count=10, avg_length=5.0, df={"a": 1}, impact_k1=1.2, impact_b=0.75,
                         impact_avgdl=5.0)
    assert lexical.uses_impacts(stats, ChunkScope(), k1=1.2, b=0.75)
    assert lexical.uses_impacts(stats, ChunkScope(metadata={"x": 1}), k1=1.2, b=0.75)
    assert not lexical.uses_impacts(stats, ChunkScope(document_ids=["d"]), k1=1.2, b=0.75)
    assert not lexical.uses_impacts(stats, ChunkScope(), k1=0.9, b=0.75)
    assert not lexical.uses_impacts(LexicalStats(10, 5.0, {"a": 1}), ChunkScope(), k1=1.2, b=0.75)
    assert math.isinf(chunk_store.POSTINGS_START[0])


def test_an_unsettled_query_at_the_budget_is_answered_but_not_called_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a query of the two most common terms only, and a budget too small to settle its top 10
    store = _served(monkeypatch, 8, 600, 40, first_depth=8)
    weights, stats = _query(store, ("w0", "w1"))
    result = impacts.impact_search(None, _lexical_query(stats, weights, ChunkScope(), max_postings=40))
    # Then it still answers ten chunks, with their exact scores, and says the list is not certain
    assert result is not None and not result.exact and len(result.hits) == 10
    # And it used its whole budget (a last, shallower round), never more
    assert 36 <= store.reads <= 40
    assert all(s == pytest.approx(store.score(c, weights)) for c, s in result.hits)


def test_a_query_of_more_terms_than_a_machine_word_has_bits_is_still_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a query of 80 distinct terms (a long pasted question; the API allows 4,000 characters)
    store = _served(monkeypatch, 13, 300, 200, first_depth=4)
    weights, stats = _query(store, sorted({t for c in store.docs.values() for t in c})[:80])
    # When it is searched through the lists
    result = _search("lists", stats, weights, np.zeros(0, dtype=np.int64))
    # Then it is the brute-force top 10
    assert result is not None and result.exact
    assert [c for c, _ in result.hits] == [c for c, _ in _brute(store, weights, 10)]


def test_exact_scoring_stops_at_max_exact_chunks_when_lists_remain_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a query of common terms whose budget ends with many chunks still in contention
    rng = random.Random(21)
    docs = _corpus(rng, 800, 30)
    avgdl = sum(sum(c.values()) for c in docs.values()) / len(docs)
    store = FakeStore(docs, ref_avgdl=avgdl)
    scored: list[int] = []

    def counting(conn, tenant_id, idf, chunk_ids, scope, **kw):  # noqa: ANN001, ANN003
        scored.extend(chunk_ids)
        return store.bm25_score(conn, tenant_id, idf, chunk_ids, scope, **kw)

    monkeypatch.setattr(chunk_store, "read_postings", store.read_postings)
    monkeypatch.setattr(chunk_store, "bm25_score", counting)
    monkeypatch.setattr(impacts, "FIRST_DEPTH", 8)
    monkeypatch.setattr(impacts, "MAX_EXACT", 30)
    df = Counter(t for c in docs.values() for t in c)
    weights = {t: lexical.idf(len(docs), df[t]) for t in ("w0", "w1", "w2")}
    stats = LexicalStats(chunk_count=len(docs), avg_length=avgdl, df={t: df[t] for t in weights}, impact_avgdl=avgdl)
    # When it is searched with a budget smaller than its lists
    result = _search("lists", stats, weights, np.zeros(0, dtype=np.int64), max_postings=120)
    # Then no more than MAX_EXACT chunks were scored, the scores are exact, and a cut-short answer says so
    assert result is not None and len(result.hits) == 10 and 0 < len(scored) <= 30
    assert all(s == pytest.approx(store.score(c, weights)) for c, s in result.hits)
    assert not result.exact  # the cap cut the scoring short, and the answer says so


def test_any_budget_answers_with_exact_scores_and_never_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given lists of very different lengths (a common and a rarer term) searched under many budgets, some of
    # which end in a last round shared between a shallow and a deep list
    store = _served(monkeypatch, 2, 1500, 60, first_depth=2)
    for terms in (("w3", "w35"), ("w3", "w4", "w9", "w34"), ("w0", "w1", "w30")):
        weights, stats = _query(store, terms)
        for budget in range(8, 3000, 13):
            # When it is searched within that budget
            result = _search("lists", stats, weights, np.zeros(0, dtype=np.int64), max_postings=budget)
            # Then it answers without failing (a cut-short answer may hold fewer than ten), with exact scores,
            # and the brute-force top when it says it is exact
            assert result is not None and 0 < len(result.hits) <= 10
            assert all(s == pytest.approx(store.score(c, weights)) for c, s in result.hits)
            if result.exact:
                assert [c for c, _ in result.hits] == [c for c, _ in _brute(store, weights, 10)]


def test_a_filtered_search_cut_short_by_the_scoring_cap_declines(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a query whose top is certain but whose exact scoring stops at MAX_EXACT, under a filter's ids
    store = _served(monkeypatch, 0, 800, 30, first_depth=8)
    monkeypatch.setattr(impacts, "MAX_EXACT", 30)
    weights, stats = _query(store, ("w0", "w3", "w5"))
    allowed = np.array(sorted(store.docs)[::2], dtype=np.int64)
    # When it is searched through the filtered lists
    result = _search("allowed", stats, weights, allowed, max_postings=340)
    # Then it declines, so the caller answers exactly another way
    assert result is None


@pytest.mark.parametrize("path", ["lists", "scored"])
def test_the_first_slices_stay_within_a_small_postings_budget(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    # Given the default first slice (512) and a budget of 100 postings for a query of three common terms
    store = _served(monkeypatch, 11, 2000, 30, first_depth=512)
    weights, stats = _query(store, ("w0", "w1", "w2"))
    # When it is searched, then no more than the budget is read, and the answer still comes (or declines)
    result = _search(path, stats, weights, np.zeros(0, dtype=np.int64), max_postings=100)
    assert store.reads <= 100
    assert result is None or len(result.hits) == 10
