"""The prompt rollout benchmark (bench/prompt_rollout.py) in a small configuration on the test database: the
three variants run as many calls each, and the rollout variant splits its keys between the two versions."""

from __future__ import annotations

import pytest

from bench import prompt_rollout


def test_the_benchmark_measures_each_variant(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: dict[str, object] = {}
    monkeypatch.setattr(prompt_rollout, "record", lambda name, data: recorded.update({name: data}))
    monkeypatch.setenv("BENCH_ROLLOUT_ROUNDS", "2")
    monkeypatch.setenv("BENCH_ROLLOUT_CALLS", "30")
    result = prompt_rollout.main(pg_url)
    assert recorded["prompt_rollout"] is result
    for variant in ("label", "no_rollout", "rollout"):
        assert result[variant]["n"] == 60
    assert len(result["rollout_added_ms_per_round"]) == 2 and "no_rollout_added_ms_median" in result
    assert 0.2 < result["candidate_share_observed"] < 0.8  # 60 keys at 50%: both versions served
