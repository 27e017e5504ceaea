"""Reciprocal rank fusion against hand-computed scores."""

from __future__ import annotations

import pytest

from stratus.retrieval.fusion import rrf
from stratus.retrieval.lexical import idf, plan_terms


def test_rrf_scores_and_order_by_hand() -> None:
    lexical = [(1, 9.0), (2, 7.0), (3, 5.0)]
    dense = [(3, 0.9), (4, 0.8), (1, 0.7)]
    fused = rrf({"lexical": lexical, "dense": dense}, k=60)
    # 1: 1/61 + 1/63; 3: 1/63 + 1/61 (tie, broken by best single rank, then id); 2: 1/62; 4: 1/62
    assert [f.chunk_id for f in fused] == [1, 3, 2, 4]
    assert fused[0].score == pytest.approx(1 / 61 + 1 / 63)
    assert fused[2].score == pytest.approx(1 / 62)
    assert fused[0].ranks == {"lexical": 1, "dense": 3} and fused[0].scores == {"lexical": 9.0, "dense": 0.7}
    assert fused[2].ranks == {"lexical": 2} and "dense" not in fused[2].scores


def test_rrf_limit_and_a_single_ranking() -> None:
    fused = rrf({"dense": [(5, 0.9), (6, 0.8), (7, 0.1)]}, k=1, limit=2)
    assert [(f.chunk_id, f.score) for f in fused] == [(5, 1 / 2), (6, 1 / 3)]


def test_rrf_counts_a_duplicate_once_and_rejects_bad_k() -> None:
    fused = rrf({"lexical": [(1, 2.0), (1, 1.0), (2, 0.5)]}, k=60)
    assert fused[0].score == pytest.approx(1 / 61) and fused[0].ranks == {"lexical": 1}
    assert fused[1].ranks == {"lexical": 3}
    with pytest.raises(ValueError):
        rrf({}, k=0)
    assert rrf({"lexical": [], "dense": []}) == []


def test_lucene_idf_and_common_term_planning() -> None:
    assert idf(3, 1) == pytest.approx(0.9808292530117262)  # ln(1 + 2.5 / 1.5)
    assert idf(10, 10) > 0  # never negative, even for a term in every chunk
    # Rarest terms first until the postings budget; the first term is always kept.
    assert plan_terms({"a": 50, "b": 5, "c": 500}, max_postings=100) == (["b", "a"], ["c"])
    assert plan_terms({"the": 900}, max_postings=100) == (["the"], [])
