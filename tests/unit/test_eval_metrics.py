"""The sampler's and the gateway's figures leave as CloudWatch embedded-metric-format log lines: one
document per metric, in the Stratus namespace, with the service and the metric's own dimensions."""

from __future__ import annotations

import json

import pytest

from stratus.evals.metrics import NAMESPACE, Metric, emit


def test_each_metric_is_one_emf_document_with_its_dimensions(capsys: pytest.CaptureFixture[str]) -> None:
    count = emit([Metric("EvalScore", 0.75, dimensions={"Prompt": "rag-answer@2", "Metric": "groundedness"}),
                  Metric("EvalSamples", 12, "Count")], service="eval_sampler")

    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert count == 2 and len(docs) == 2
    score, samples = docs
    directive = score["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == NAMESPACE == "Stratus"
    assert directive["Metrics"] == [{"Name": "EvalScore", "Unit": "None"}]
    assert sorted(directive["Dimensions"][0]) == ["Metric", "Prompt", "service"]
    assert score["EvalScore"] == [0.75] and score["Prompt"] == "rag-answer@2" and score["service"] == "eval_sampler"
    assert samples["EvalSamples"] == [12] and samples["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] == "Count"
    assert "Prompt" not in samples  # dimensions do not leak from one document to the next
