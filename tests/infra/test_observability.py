"""The template's alarms and dashboard read metrics the code really emits (name, namespace and dimensions),
the dashboard body is valid JSON once substituted, and the eval sampler runs on its schedule one run at
a time. A renamed metric on either side fails here instead of leaving an alarm that can never fire."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from stratus.evals.metrics import NAMESPACE
from stratus.local.resources import rate_seconds
from stratus.local.template import function_properties


def _emitted(capsys: pytest.CaptureFixture[str]) -> set[tuple[str, frozenset[str], str]]:
    """(metric name, dimension names, service) of everything the gateway and the sampler emit."""
    from stratus.evals.metrics import Metric, emit
    from stratus.evals.sampler import RunResult, _run_metrics
    from stratus.gateway.context import RequestContext, _emit_metrics

    capsys.readouterr()
    _emit_metrics(RequestContext(request_id="r", route="/v1/chat/completions", method="POST", emit_metrics=True))
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    emit([*_run_metrics(RunResult(1, now, now)),
          Metric("EvalScore", 1.0, dimensions={"Prompt": "rag-answer@1", "Metric": "latency"})], service="eval_sampler")
    out = set()
    for line in capsys.readouterr().out.splitlines():
        doc = json.loads(line)
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == NAMESPACE
        for metric in directive["Metrics"]:
            out.add((metric["Name"], frozenset(directive["Dimensions"][0]), doc["service"]))
    return out


def _alarm_metrics(template: dict[str, Any]) -> list[dict[str, Any]]:
    """Namespace, name and dimensions of every metric an alarm reads (plain or in a metric math query)."""
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        if "MetricName" in props:
            found.append({"alarm": logical_id, **{k: props[k] for k in ("Namespace", "MetricName", "Dimensions")}})
        for query in props.get("Metrics", []):
            if "MetricStat" in query:
                found.append({"alarm": logical_id, **query["MetricStat"]["Metric"]})
    return found


def _dashboard_metrics(body: str) -> list[list[Any]]:
    """The dashboard's metric rows with CloudWatch's shorthand expanded ("." repeats the row above's value
    at that position, "..." all of the row above's values)."""
    rows: list[list[Any]] = []
    for widget in json.loads(body)["widgets"]:
        previous: list[Any] = []
        for row in widget["properties"].get("metrics", []):
            values = [v for v in row if not isinstance(v, dict)]
            if values[:1] == ["..."]:
                values = previous + values[1:]
            else:
                values = [previous[i] if v == "." else v for i, v in enumerate(values)]
            if values:
                rows.append(values)
                previous = values
    return rows


def test_every_stratus_metric_an_alarm_reads_is_emitted_with_its_dimensions(template: dict[str, Any],
                                                                            capsys: pytest.CaptureFixture[str]
                                                                            ) -> None:
    emitted = _emitted(capsys)
    alarms = _alarm_metrics(template)
    assert {a["alarm"] for a in alarms} >= {"GatewayErrorRateAlarm", "GatewayLatencyAlarm", "SpendAlarm",
                                            "EvalRegressionAlarm"}
    for metric in alarms:
        if metric["Namespace"] == "AWS/ApiGateway":  # the HTTP API's own counts (5xx share)
            assert metric["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "GatewayApi"}}], metric
        if metric["Namespace"] != NAMESPACE:
            continue
        dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        assert (metric["MetricName"], frozenset(dims), dims["service"]) in emitted, metric


def test_the_dashboard_is_json_and_charts_emitted_metrics(template: dict[str, Any],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    emitted = _emitted(capsys)
    body = re.sub(r"\$\{[^}]+\}", "X", template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"])
    rows = _dashboard_metrics(body)
    stratus = [r for r in rows if r[0] == NAMESPACE]
    assert len(stratus) >= 6
    for row in stratus:
        namespace, name, *pairs = row
        dims = dict(zip(pairs[::2], pairs[1::2], strict=True))
        assert (name, frozenset(dims), dims["service"]) in emitted, row
    assert "EvalScore" in body and "SEARCH(" in body  # scores per prompt version and metric, found by search


def test_the_eval_sampler_runs_on_its_schedule_one_run_at_a_time(template: dict[str, Any]) -> None:
    props = function_properties(template, "EvalSamplerFunction")
    event = props["Events"]["Sampling"]
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"] == {"Ref": "EvalSchedule"}
    default = template["Parameters"]["EvalSchedule"]["Default"]
    assert rate_seconds(default) == 900 and re.fullmatch(template["Parameters"]["EvalSchedule"]["AllowedPattern"],
                                                         default)
    assert props["ReservedConcurrentExecutions"] == 1  # a run takes the window after the last finished one
    assert props["Timeout"] == 900
