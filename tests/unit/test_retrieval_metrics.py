"""Retrieval metrics against hand computations, and the request model's validation."""

from __future__ import annotations

import math

import pytest

from stratus_tools.evals.retrieval import distinct_documents, mrr_at, ndcg_at, percentile, recall_at


def test_recall_and_mrr() -> None:
    ranked = ["x", "a", "y", "b", "z"]
    assert recall_at(ranked, {"a", "b"}, 2) == 0.5
    assert recall_at(ranked, {"a", "b"}, 5) == 1.0
    assert recall_at(ranked, {"q"}, 5) == 0.0
    assert mrr_at(ranked, {"a", "b"}, 10) == 0.5
    assert mrr_at(ranked, {"z"}, 4) == 0.0  # beyond the cutoff


def test_ndcg_by_hand() -> None:
    # Relevant at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); ideal = 1/log2(2) + 1/log2(3)
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at(["x", "a", "y", "b"], {"a", "b"}, 10) == pytest.approx(expected)
    assert ndcg_at(["a", "b"], {"a", "b"}, 10) == pytest.approx(1.0)
    # Ideal DCG is capped at k relevant documents.
    assert ndcg_at(["a"], {"a", "b", "c"}, 1) == pytest.approx(1.0)
    assert ndcg_at([], {"a"}, 10) == 0.0


def test_percentile_interpolates_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == 25.0
    assert percentile(values, 95) == pytest.approx(38.5)
    assert percentile([7.0], 95) == 7.0 and percentile([], 50) == 0.0


def test_a_document_counts_at_its_best_chunk() -> None:
    assert distinct_documents(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]
