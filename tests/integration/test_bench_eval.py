"""The eval sampler benchmark in a small configuration (one copy of the questions, one round): real
samples are seeded and scored, and the cost model reads the catalog's prices."""

from __future__ import annotations

from bench import eval_sampler


def test_the_benchmark_scores_seeded_samples_and_prices_a_hosted_judge(pg_url: str) -> None:
    result = eval_sampler.run(pg_url, copies=1, rounds_n=1)
    assert result["samples"] == len(eval_sampler.QUESTIONS)
    assert result["rounds"][0]["judge_failures"] == 0 and result["samples_per_s_median"] > 0
    cost = result["cost_at_1m_requests_per_day"]
    assert cost["sampled_per_day"] == 20_000 and cost["judge_prompt_tokens_mean"] > 100
    mini = cost["judge_by_deployment"]["openai-gpt-4.1-mini"]
    # 20,000 judged requests a day at $0.40 / $1.60 per million tokens in / out.
    expected = 20_000 * (cost["judge_prompt_tokens_mean"] * 0.40 + 60 * 1.60) / 1e6
    assert abs(mini["usd_per_day"] - expected) < 0.01
