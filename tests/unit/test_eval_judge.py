"""The judge's verdict parsing: the first JSON object of the reply, scores 1-5 as integers, and a failure
that names what was wrong (recorded as a judge failure, never as a zero score)."""

from __future__ import annotations

import pytest

from stratus.evals.judge import offline_judge, parse_verdict, to_unit


def test_a_verdict_wrapped_in_prose_or_a_code_fence_is_read() -> None:
    reply = 'Here is my grade:\n```json\n{"faithfulness": 4, "relevance": 2, "reason": "one claim unsupported"}\n```'
    verdict = parse_verdict(reply)
    assert (verdict.faithfulness, verdict.relevance, verdict.reason) == (4, 2, "one claim unsupported")
    assert (to_unit(1), to_unit(3), to_unit(5)) == (0.0, 0.5, 1.0)


@pytest.mark.parametrize(("reply", "message"), [
    ("I think it is fine.", "holds no JSON object"),
    ('{"faithfulness": 4, "relevance": }', "not valid JSON"),
    ('{"faithfulness": 6, "relevance": 3}', "invalid at faithfulness"),
    ('{"faithfulness": 0, "relevance": 3}', "invalid at faithfulness"),
    ('{"faithfulness": 4}', "invalid at relevance"),
    ('{"faithfulness": "high", "relevance": 3}', "invalid at faithfulness"),
    ("", "holds no JSON object"),
])
def test_an_invalid_verdict_is_an_error_naming_the_problem(reply: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_verdict(reply)


def test_the_offline_judge_rates_a_refusal_faithful_and_is_named_as_such() -> None:
    judgement = offline_judge("What is the refund window?", "I cannot answer that from the documents.", [])
    assert judgement.scorer == "judge-offline" and judgement.error is None
    assert judgement.scores["faithfulness"] == 1.0
