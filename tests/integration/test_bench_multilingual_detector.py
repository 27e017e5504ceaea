"""Smoke test of bench/multilingual_detector.py: both detectors timed on the same four texts, the gate's call
on each, and a first use in a fresh interpreter."""

from __future__ import annotations

from bench import multilingual_detector as bench


def test_both_detectors_are_timed_on_every_text() -> None:
    result = bench.run(runs=1, rounds=2)
    assert result["gate_says"] == {"short_en": "en", "long_en": "en", "short_de": "de", "long_de": "de"}
    assert set(result["warm_p50"]) == set(bench.TEXTS)
    for figures in result["warm_p50"].values():
        assert figures["multilingual_ms"] > 0 and figures["injection_v7_ms"] > 0 and figures["ratio"] > 0
    assert result["first_use_ms"] > 0
