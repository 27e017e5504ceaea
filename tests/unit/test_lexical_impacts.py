"""The threshold algorithm over impact postings (retrieval.lexical) against brute-force BM25, in memory."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

from stratus.db import chunks as chunk_store
from stratus.db.chunks import ChunkScope, LexicalStats
from stratus.retrieval import lexical

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
            out[term] = [(cid, imp) for imp, cid in after]
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


def _brute(store: FakeStore, weights: dict[str, float], k: int) -> list[tuple[int, float]]:
    scored = [(c, store.score(c, weights)) for c in store.docs]
    return sorted(((c, s) for c, s in scored if s > 0), key=lambda x: (-x[1], x[0]))[:k]


@pytest.mark.parametrize("scope", [ChunkScope(), ChunkScope(metadata={"all": True})], ids=["lists", "scored"])
@pytest.mark.parametrize("drift", [0.5, 1.0, 2.5])
def test_threshold_search_returns_the_exact_bm25_top_k(
    monkeypatch: pytest.MonkeyPatch, drift: float, scope: ChunkScope
) -> None:
    # Given postings written at a reference avgdl that differs from today's (by a factor `drift`)
    rng = random.Random(int(drift * 10))
    docs = _corpus(rng, 400, 300)
    avgdl = sum(sum(c.values()) for c in docs.values()) / len(docs)
    store = FakeStore(docs, ref_avgdl=avgdl / drift)
    monkeypatch.setattr(chunk_store, "read_postings", store.read_postings)
    monkeypatch.setattr(chunk_store, "bm25_score", store.bm25_score)
    monkeypatch.setattr(lexical, "FIRST_DEPTH", 4)
    monkeypatch.setattr(lexical, "GROWTH", 2)
    df = Counter(t for c in docs.values() for t in c)
    for _ in range(40):
        # When a query of common and rare terms is answered by the threshold algorithm
        terms = rng.sample(sorted(df), rng.randint(1, 6)) + ["w0"]
        weights = {t: lexical.idf(len(docs), df[t]) for t in set(terms)}
        stats = LexicalStats(chunk_count=len(docs), avg_length=avgdl, df={t: df[t] for t in weights},
                             impact_avgdl=avgdl / drift)
        store.reads = 0
        result = lexical.impact_search(None, "t", stats, weights, scope, limit=10, k1=K1, b=B,
                                       max_postings=10**6)
        # Then it is the brute-force top 10, scores included, and certified exact
        assert result is not None and result.exact
        want = _brute(store, weights, 10)
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
    df = Counter(t for c in docs.values() for t in c)
    rare = [t for t in df if 3 <= df[t] <= 20][:2]
    weights = {t: lexical.idf(len(docs), df[t]) for t in [*rare, "w0"]}
    stats = LexicalStats(chunk_count=len(docs), avg_length=avgdl, df={t: df[t] for t in weights}, impact_avgdl=avgdl)
    # When it is searched
    result = lexical.impact_search(None, "t", stats, weights, ChunkScope(), limit=10, k1=K1, b=B, max_postings=10**6)
    # Then it reads far fewer postings than the common term alone holds, and is exact
    assert result is not None and result.exact
    assert store.reads < df["w0"] / 4
    assert [c for c, _ in result.hits] == [c for c, _ in _brute(store, weights, 10)]


def test_threshold_search_gives_up_past_the_postings_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    docs = _corpus(rng, 500, 50)
    avgdl = sum(sum(c.values()) for c in docs.values()) / len(docs)
    store = FakeStore(docs, ref_avgdl=avgdl)
    monkeypatch.setattr(chunk_store, "read_postings", store.read_postings)
    # A scope that admits nothing: no top 10 can ever be certified, so the search must hand over
    monkeypatch.setattr(chunk_store, "bm25_score", lambda *a, **k: [])
    monkeypatch.setattr(lexical, "FIRST_DEPTH", 4)
    df = Counter(t for c in docs.values() for t in c)
    weights = {t: lexical.idf(len(docs), df[t]) for t in ("w0", "w1")}
    stats = LexicalStats(chunk_count=len(docs), avg_length=avgdl, df={t: df[t] for t in weights}, impact_avgdl=avgdl)
    assert lexical.impact_search(None, "t", stats, weights, ChunkScope(metadata={"none": 1}), limit=10, k1=K1, b=B,
                                 max_postings=100) is None


def test_threshold_bound_scales_unread_impacts_by_the_drift() -> None:
    plan = lexical.ImpactPlan({"a": 2.0, "b": 1.0}, drift=1.5)
    assert lexical.threshold(plan, {"a": 1.0, "b": None}) == pytest.approx(3.0, rel=1e-5)
    assert lexical.threshold(plan, {"a": None, "b": None}) == 0.0


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
    rng = random.Random(8)
    docs = _corpus(rng, 600, 40)
    avgdl = sum(sum(c.values()) for c in docs.values()) / len(docs)
    store = FakeStore(docs, ref_avgdl=avgdl)
    monkeypatch.setattr(chunk_store, "read_postings", store.read_postings)
    monkeypatch.setattr(chunk_store, "bm25_score", store.bm25_score)
    monkeypatch.setattr(lexical, "FIRST_DEPTH", 8)
    df = Counter(t for c in docs.values() for t in c)
    weights = {t: lexical.idf(len(docs), df[t]) for t in ("w0", "w1")}
    stats = LexicalStats(chunk_count=len(docs), avg_length=avgdl, df={t: df[t] for t in weights}, impact_avgdl=avgdl)
    result = lexical.impact_search(None, "t", stats, weights, ChunkScope(), limit=10, k1=K1, b=B, max_postings=40)
    # Then it still answers ten chunks, with their exact scores, and says the list is not certain
    assert result is not None and not result.exact and len(result.hits) == 10
    assert all(s == pytest.approx(store.score(c, weights)) for c, s in result.hits)
