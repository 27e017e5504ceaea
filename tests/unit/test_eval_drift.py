"""Drift on synthetic embeddings: clusters of unit vectors whose mix and members we control."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stratus.errors import InvalidInput
from stratus.evals.drift import MIN_BASELINE, MIN_RECENT, binomial_tail, choose_k, measure_drift

DIM = 64


def _topics(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIM))


def _questions(topics: np.ndarray, n: int, seed: int, weights: np.ndarray | None = None,
               spread: float = 1.2) -> np.ndarray:
    """n unit vectors around the given topic directions; two questions on one topic have a cosine near 0.4, as
    MiniLM gives two different questions on one subject (rewordings are above 0.8)."""
    rng = np.random.default_rng(seed)
    which = rng.choice(len(topics), size=n, p=weights)
    unit_topics = topics / np.linalg.norm(topics, axis=1, keepdims=True)
    x = unit_topics[which] + spread * rng.normal(size=(n, DIM)) / math.sqrt(DIM)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _texts(prefix: str, n: int) -> list[str]:
    return [f"{prefix} question {i}" for i in range(n)]


TOPICS = _topics(6, seed=1)


def test_same_distribution_is_rarely_drift() -> None:
    # Given 40 baseline/recent pairs drawn from the same topic mix
    reports = [measure_drift(_questions(TOPICS, 300, seed=seed), _questions(TOPICS, 120, seed=seed + 1000),
                             _texts("same", 120)) for seed in range(40)]
    # Then the false-alarm rate is small (3% over 100 such pairs when measured; the 5% quantile of a finite
    # baseline is itself noisy, so it sits a little above ALPHA), and far shares centre on the null share
    assert all(r.status == "ok" for r in reports)
    assert sum(r.drifted for r in reports) <= 4
    assert np.mean([r.far_share for r in reports]) == pytest.approx(0.05, abs=0.02)
    assert np.median([r.centroid_shift / r.shift_threshold for r in reports]) < 0.6


def test_a_new_topic_is_drift_with_its_questions_as_examples() -> None:
    baseline = _questions(TOPICS, 300, seed=2)
    old = _questions(TOPICS, 90, seed=3)
    new = _questions(_topics(1, seed=99), 30, seed=4)
    recent = np.vstack([old, new])
    texts = _texts("old", len(old)) + _texts("new", len(new))

    report = measure_drift(baseline, recent, texts)

    assert report.drifted
    assert report.far_count is not None and report.far_count >= 25  # nearly all of the new topic
    assert report.p_value is not None and report.p_value < 1e-6
    assert report.examples and all(e.text.startswith("new") for e in report.examples)
    assert [e.similarity for e in report.examples] == sorted(e.similarity for e in report.examples)
    assert all(e.similarity < report.far_threshold for e in report.examples)


def test_a_changed_mix_of_known_topics_moves_the_centroid() -> None:
    # No new kind of question, but one topic now dominates: the centroid rule catches it.
    baseline = _questions(TOPICS, 300, seed=5)
    recent = _questions(TOPICS, 120, seed=6, weights=np.array([0.9, 0.02, 0.02, 0.02, 0.02, 0.02]))

    report = measure_drift(baseline, recent, _texts("mix", len(recent)))

    assert report.drifted
    assert report.centroid_shift > report.shift_threshold


def test_rewordings_count_once() -> None:
    # Forty copies of one off-topic question are one far question, not forty.
    baseline = _questions(TOPICS, 300, seed=7)
    odd = _questions(_topics(1, seed=98), 1, seed=8)
    recent = np.vstack([_questions(TOPICS, 60, seed=9), np.repeat(odd, 40, axis=0)])
    texts = _texts("same", 60) + ["the odd one"] * 40

    report = measure_drift(baseline, recent, texts)

    assert report.recent_size == 100 and report.recent_distinct == 61
    assert not report.drifted
    assert [e.text for e in report.examples].count("the odd one") == 1


def test_null_share_is_calibrated_on_the_baseline() -> None:
    report = measure_drift(_questions(TOPICS, 400, seed=11), _questions(TOPICS, 50, seed=12), _texts("q", 50))
    assert 0.04 <= report.null_share <= 0.07
    assert report.k == choose_k(report.baseline_distinct)


def test_explicit_threshold_and_k() -> None:
    baseline, recent = _questions(TOPICS, 200, seed=13), _questions(TOPICS, 40, seed=14)
    everything_far = measure_drift(baseline, recent, _texts("q", 40), far_threshold=1.01, k=3)
    assert everything_far.k == 3
    assert everything_far.far_count == 40 and everything_far.null_share == 1.0
    assert not everything_far.drifted  # all far against a null of "all far" is no excess


def test_deterministic_and_json_ready() -> None:
    baseline, recent = _questions(TOPICS, 200, seed=15), _questions(TOPICS, 40, seed=16)
    first = measure_drift(baseline, recent, _texts("q", 40)).to_json()
    second = measure_drift(baseline.copy(), recent.copy(), _texts("q", 40)).to_json()
    assert first == second
    assert json.loads(json.dumps(first)) == first
    assert {"centroid_shift", "far_share", "null_share", "drifted", "examples", "rule", "status"} <= first.keys()


@pytest.mark.parametrize(("n_base", "n_recent"), [(0, 0), (0, 50), (200, 0), (MIN_BASELINE - 1, 50),
                                                  (200, MIN_RECENT - 1)])
def test_small_windows_are_insufficient_data(n_base: int, n_recent: int) -> None:
    baseline = _questions(TOPICS, n_base, seed=17) if n_base else np.zeros((0, DIM), dtype=np.float32)
    recent = _questions(TOPICS, n_recent, seed=18) if n_recent else np.zeros((0, DIM), dtype=np.float32)

    report = measure_drift(baseline, recent, _texts("q", n_recent))

    assert report.status == "insufficient_data" and not report.drifted
    assert report.reason and "distinct" in report.reason
    out = report.to_json()
    assert out["centroid_shift"] is None and out["far_share"] is None and out["examples"] == []


def test_a_window_of_one_repeated_question_is_insufficient() -> None:
    one = np.repeat(_questions(TOPICS, 1, seed=19), 50, axis=0)
    report = measure_drift(_questions(TOPICS, 200, seed=20), one, ["same"] * 50)
    assert report.status == "insufficient_data" and report.recent_distinct == 1


def test_invalid_input_names_the_field() -> None:
    baseline, recent = _questions(TOPICS, 50, seed=21), _questions(TOPICS, 20, seed=22)
    with pytest.raises(InvalidInput) as texts:
        measure_drift(baseline, recent, ["only one"])
    assert texts.value.field == "recent_texts"
    with pytest.raises(InvalidInput) as dims:
        measure_drift(baseline, recent[:, :32], _texts("q", 20))
    assert dims.value.field == "recent"
    broken = baseline.copy()
    broken[3, 0] = np.nan
    with pytest.raises(InvalidInput) as nan:
        measure_drift(broken, recent, _texts("q", 20))
    assert nan.value.field == "baseline"
    with pytest.raises(InvalidInput) as zero:
        measure_drift(baseline, np.vstack([recent[:19], np.zeros((1, DIM))]), _texts("q", 20))
    assert zero.value.field == "recent"
    with pytest.raises(InvalidInput) as k:
        measure_drift(baseline, recent, _texts("q", 20), k=0)
    assert k.value.field == "k"


@pytest.mark.parametrize(("count", "n", "p"), [(0, 10, 0.05), (3, 10, 0.05), (7, 120, 0.05), (1, 1, 0.3),
                                               (40, 50, 0.5)])
def test_binomial_tail_matches_the_direct_sum(count: int, n: int, p: float) -> None:
    direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(count, n + 1))
    assert binomial_tail(count, n, p) == pytest.approx(direct, rel=1e-9)
