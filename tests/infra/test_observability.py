"""The template's alarms and dashboard read metrics the code really emits (name, namespace and dimensions),
the dashboard body is valid JSON once substituted, and the eval sampler runs on its schedule one run at
a time. A renamed metric on either side fails here instead of leaving an alarm that can never fire."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from stratus.evals.metrics import NAMESPACE
from stratus_tools.local.resources import rate_seconds
from stratus_tools.local.template import function_properties


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
            found.append({"alarm": logical_id, "Dimensions": [],
                          **{k: props[k] for k in ("Namespace", "MetricName", "Dimensions") if k in props}})
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
        if metric["Namespace"] == "AWS/ApiGateway":  # the REST API stage's own counts (5xx share)
            assert metric["Dimensions"] == [
                {"Name": "ApiName", "Value": template["Resources"]["GatewayApi"]["Properties"]["Name"]},
                {"Name": "Stage", "Value": {"Ref": "Stage"}}], metric
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


# --- logs, the alarm topic and the alarms on AWS's own metrics ------------------------------------------

def _resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == type_}


def test_every_function_logs_json_into_its_own_group_with_retention(template: dict[str, Any]) -> None:
    log_groups = _resources(template, "AWS::Logs::LogGroup")
    levels = template["Mappings"]["LambdaLogLevel"]
    for logical_id in _resources(template, "AWS::Serverless::Function"):
        logging = function_properties(template, logical_id)["LoggingConfig"]
        assert logging["LogFormat"] == "JSON", logical_id
        assert logging["ApplicationLogLevel"] == {"Fn::FindInMap": ["LambdaLogLevel", {"Ref": "LogLevel"},
                                                                    "Application"]}
        group = logging["LogGroup"]["Ref"]
        assert group in log_groups, logical_id
        # Named by the stack, not by !Ref of the function: the function waits for its group (no cycle).
        assert "Fn::Sub" in log_groups[group]["Properties"]["LogGroupName"], group
    # Every LogLevel has a Lambda level, and none filters out INFO: EMF metric lines carry no "level" and
    # Lambda counts them as INFO, so a WARN floor would silently drop every Stratus metric.
    assert set(levels) == set(template["Parameters"]["LogLevel"]["AllowedValues"])
    assert {v["Application"] for v in levels.values()} <= {"DEBUG", "INFO"}


def test_every_log_group_expires_and_is_encrypted_with_the_stack_key(template: dict[str, Any]) -> None:
    groups = _resources(template, "AWS::Logs::LogGroup")
    assert len(groups) >= 8  # six functions, the access log, the workflow
    for logical_id, group in groups.items():
        props = group["Properties"]
        assert props["RetentionInDays"] == {"Fn::If": ["IsProd", 90, 30]}, logical_id
        assert props["KmsKeyId"] == {"Fn::GetAtt": ["ObservabilityKey", "Arn"]}, logical_id


def test_the_stack_key_lets_logs_and_alarms_use_it(template: dict[str, Any]) -> None:
    key = template["Resources"]["ObservabilityKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    services = {}
    for statement in key["KeyPolicy"]["Statement"]:
        service = statement["Principal"].get("Service")
        if service is not None:
            services[json.dumps(service)] = statement
    logs = services[json.dumps({"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"})]
    assert "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]  # this account's groups only
    # The AWS-managed aws/sns key cannot be used by CloudWatch alarms: the topic needs a customer key
    # whose policy lets cloudwatch.amazonaws.com encrypt for it.
    alarms = services[json.dumps("cloudwatch.amazonaws.com")]
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(alarms["Action"])
    topic = template["Resources"]["AlarmTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "ObservabilityKey"}


def test_every_alarm_notifies_the_alarm_topic(template: dict[str, Any]) -> None:
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 9
    for logical_id, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert props.get("OKActions", [{"Ref": "AlarmTopic"}]) == [{"Ref": "AlarmTopic"}], logical_id
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    assert re.fullmatch(template["Parameters"]["AlarmEmail"]["AllowedPattern"], "")
    assert re.fullmatch(template["Parameters"]["AlarmEmail"]["AllowedPattern"], "ops@example.com")


def _metrics_of(template: dict[str, Any], logical_id: str) -> list[dict[str, Any]]:
    return [m for m in _alarm_metrics(template) if m["alarm"] == logical_id]


def test_metric_math_alarms_return_one_series_from_defined_ids(template: dict[str, Any]) -> None:
    for logical_id, alarm in _resources(template, "AWS::CloudWatch::Alarm").items():
        queries = alarm["Properties"].get("Metrics")
        if not queries:
            continue
        ids = {q["Id"] for q in queries}
        assert [q.get("ReturnData", True) for q in queries].count(True) == 1, logical_id
        for query in queries:
            if "Expression" in query:
                names = set(re.findall(r"\b[a-z][a-z0-9_]*\b", query["Expression"])) - {"FILL", "IF", "MAX"}
                assert names <= ids, (logical_id, names - ids)


def test_the_database_connections_alarm_watches_the_writer(template: dict[str, Any]) -> None:
    (metric,) = _metrics_of(template, "DatabaseConnectionsAlarm")
    assert (metric["Namespace"], metric["MetricName"]) == ("AWS/RDS", "DatabaseConnections")
    assert metric["Dimensions"] == [{"Name": "DBClusterIdentifier", "Value": {"Ref": "DatabaseCluster"}},
                                    {"Name": "Role", "Value": "WRITER"}]
    props = template["Resources"]["DatabaseConnectionsAlarm"]["Properties"]
    assert props["Threshold"] == {"Ref": "DatabaseConnectionsAlarmThreshold"}
    # The default is ~80% of max_connections at the default DatabaseMaxCapacity (4 ACU: 823 connections).
    assert template["Parameters"]["DatabaseMaxCapacity"]["Default"] == 4
    assert 0.7 * 823 <= template["Parameters"]["DatabaseConnectionsAlarmThreshold"]["Default"] <= 0.9 * 823


def test_the_workflow_alarm_counts_failures_and_timeouts_of_the_query_workflow(template: dict[str, Any]) -> None:
    metrics = _metrics_of(template, "QueryWorkflowFailureAlarm")
    assert {m["MetricName"] for m in metrics} == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsStarted"}
    for metric in metrics:
        assert metric["Namespace"] == "AWS/States"
        assert metric["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "QueryStateMachine"}}]


def test_the_throttles_alarm_covers_the_request_path_and_ingestion(template: dict[str, Any]) -> None:
    metrics = _metrics_of(template, "LambdaThrottlesAlarm")
    assert all((m["Namespace"], m["MetricName"]) == ("AWS/Lambda", "Throttles") for m in metrics)
    functions = {m["Dimensions"][0]["Value"]["Ref"] for m in metrics}
    every = set(_resources(template, "AWS::Serverless::Function"))
    # The sampler's single reserved execution throttles an overlapping scheduled run by design; MigrateFunction
    # runs once per deploy, for CloudFormation, which fails the deploy on a throttle.
    assert functions == every - {"EvalSamplerFunction", "MigrateFunction"}


def test_the_scheduled_sampler_has_a_dead_letter_queue_with_an_alarm(template: dict[str, Any]) -> None:
    props = function_properties(template, "EvalSamplerFunction")
    assert props["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["EvalSamplerDeadLetterQueue",
                                                                                     "Arn"]}}
    (metric,) = _metrics_of(template, "EvalSamplerDeadLetterAlarm")
    assert metric["Dimensions"] == [{"Name": "QueueName",
                                     "Value": {"Fn::GetAtt": ["EvalSamplerDeadLetterQueue", "QueueName"]}}]


def test_rejected_provider_credentials_reach_an_alarm(template: dict[str, Any]) -> None:
    """The router logs AUTH_FAILED_EVENT in both functions that call providers; a metric filter on each
    function's log group counts it, and an alarm on that metric notifies the operators."""
    from stratus.llm.router import AUTH_FAILED_EVENT

    filters = _resources(template, "AWS::Logs::MetricFilter")
    watched = {f["Properties"]["LogGroupName"]["Ref"] for f in filters.values()
               if f["Properties"]["FilterPattern"] == f'"{AUTH_FAILED_EVENT}"'}
    assert watched == {"GatewayFunctionLogGroup", "GenerateFunctionLogGroup"}
    metrics = {(t["MetricNamespace"], t["MetricName"]) for f in filters.values()
               for t in f["Properties"]["MetricTransformations"]}
    alarm = template["Resources"]["ProviderAuthFailuresAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) in metrics
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
