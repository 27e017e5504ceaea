"""Fusion (weighted RRF and min-max convex combination) against hand-computed scores."""

from __future__ import annotations

import pytest

from stratus.retrieval.fusion import convex, fuse, rrf
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


def test_weighted_rrf_scales_each_list() -> None:
    fused = rrf({"lexical": [(1, 9.0)], "dense": [(2, 0.9)]}, k=60, weights={"lexical": 1.0, "dense": 3.0})
    assert [(f.chunk_id, f.score) for f in fused] == [(2, pytest.approx(3 / 61)), (1, pytest.approx(1 / 61))]
    with pytest.raises(ValueError):
        rrf({"lexical": [(1, 1.0)]}, weights={"lexical": -1.0})


def test_convex_min_max_normalises_each_list_and_weighs_them() -> None:
    lexical = [(1, 12.0), (2, 7.0), (3, 2.0)]  # normalised 1.0, 0.5, 0.0
    dense = [(3, 0.9), (4, 0.7), (2, 0.5)]  # normalised 1.0, 0.5, 0.0
    fused = convex({"lexical": lexical, "dense": dense}, weights={"lexical": 1.0, "dense": 3.0})
    scores = {f.chunk_id: f.score for f in fused}
    # Weights normalised to 0.25 / 0.75; a chunk a retriever did not return gets 0 from it.
    assert scores == pytest.approx({1: 0.25, 2: 0.125, 3: 0.75, 4: 0.375})
    assert [f.chunk_id for f in fused] == [3, 4, 1, 2]
    assert fused[0].ranks == {"lexical": 3, "dense": 1} and fused[0].scores == {"lexical": 2.0, "dense": 0.9}


def test_convex_margins_matter_where_ranks_do_not() -> None:
    # The lexical list is confident (one chunk far ahead), the dense list flat: RRF splits the two
    # first places evenly by rank, the convex sum keeps the confident match on top.
    lexical = [(1, 20.0), (2, 2.0), (3, 1.0)]
    dense = [(2, 0.51), (1, 0.50), (3, 0.30)]
    assert [f.chunk_id for f in convex({"lexical": lexical, "dense": dense})][0] == 1
    assert convex({"lexical": [(5, 3.0)]})[0].score == 1.0  # one candidate: no spread, full score
    assert convex({"lexical": [], "dense": []}) == []


def test_fuse_dispatches_on_the_method() -> None:
    rankings = {"lexical": [(1, 2.0), (2, 1.0)], "dense": [(2, 0.9), (1, 0.1)]}
    assert fuse(rankings, "rrf", rrf_k=60)[0].score == pytest.approx(1 / 61 + 1 / 62)
    assert [f.chunk_id for f in fuse(rankings, "convex", weights={"lexical": 0.25, "dense": 0.75}, limit=1)] == [2]


def test_lucene_idf_and_common_term_planning() -> None:
    assert idf(3, 1) == pytest.approx(0.9808292530117262)  # ln(1 + 2.5 / 1.5)
    assert idf(10, 10) > 0  # never negative, even for a term in every chunk
    # Rarest terms first until the postings budget; the first term is always kept.
    assert plan_terms({"a": 50, "b": 5, "c": 500}, max_postings=100) == (["b", "a"], ["c"])
    assert plan_terms({"the": 900}, max_postings=100) == (["the"], [])
