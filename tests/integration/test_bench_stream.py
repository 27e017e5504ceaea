"""The streaming benchmark at a tiny size (one round, one stream per target, a short gap): every target
streams the whole answer and each figure is measured from the upstream's own write times."""

from __future__ import annotations

from bench import stream_first_chunk as sfc


def test_the_stream_benchmark_times_each_target_from_the_upstreams_writes(pg_url: str) -> None:
    result = sfc.measure(pg_url, rounds=1, streams=1, gaps_s=(0.03, 0.01), question="rotate my keys now")
    assert result["upstream_chunks"] == 5 and set(result["by_gap_s"]) == {"0.03", "0.01"}
    for targets in result["by_gap_s"].values():
        assert set(targets) == set(sfc.TARGETS)
        for figures in targets.values():
            assert figures["streams"] == 1 and min(figures["first_chunk_p50_ms"], figures["word_lag_p50_ms"],
                                                   figures["first_word_p50_ms"]) > 0  # after the upstream wrote
        assert targets["direct"]["chunks_p50"] == 5  # one delta per upstream chunk
        assert targets["rails_on"]["chunks_p50"] >= 4  # word by word, not the sentence at once
