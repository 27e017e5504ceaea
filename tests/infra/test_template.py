"""template.yaml transforms offline, lints clean before and after the transform, and every code path,
handler and logical ID other parts of the project rely on resolves."""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from stratus.config import Settings, load_settings
from stratus_tools.local.cfn import NO_VALUE, Resolver
from stratus_tools.local.template import behind_web_adapter, function_properties, load_template, resources_of_type

from .conftest import ROOT, TEMPLATE, lint, sam_transform

# cfn-lint findings we accept, by rule id, each with the reason. Anything else fails the build.
ALLOWED_LINT_FINDINGS: dict[str, str] = {}

# Logical IDs other code (the local stack, the state machine substitutions, docs) refers to by name.
EXPECTED_RESOURCES = {
    "CommonLayer": "AWS::Serverless::LayerVersion",
    "IngestLayer": "AWS::Serverless::LayerVersion",
    "IngestFunction": "AWS::Serverless::Function",
    "RetrieveFunction": "AWS::Serverless::Function",
    "GenerateFunction": "AWS::Serverless::Function",
    "GatewayFunction": "AWS::Serverless::Function",
    "EvalSamplerFunction": "AWS::Serverless::Function",
    "Dashboard": "AWS::CloudWatch::Dashboard",
    "EvalRegressionAlarm": "AWS::CloudWatch::Alarm",
    "GatewayApi": "AWS::Serverless::Api",
    "QueryStateMachine": "AWS::Serverless::StateMachine",
    "ProviderSecret": "AWS::SecretsManager::Secret",
    "DocumentsBucket": "AWS::S3::Bucket",
    "IngestQueue": "AWS::SQS::Queue",
    "IngestDeadLetterQueue": "AWS::SQS::Queue",
    "IngestQueuePolicy": "AWS::SQS::QueuePolicy",
    "DatabaseCluster": "AWS::RDS::DBCluster",
    "DatabaseInstance": "AWS::RDS::DBInstance",
    "DatabaseSubnetGroup": "AWS::RDS::DBSubnetGroup",
    "DatabaseSecret": "AWS::SecretsManager::Secret",
    "Vpc": "AWS::EC2::VPC",
    "FunctionSecurityGroup": "AWS::EC2::SecurityGroup",
    "DatabaseSecurityGroup": "AWS::EC2::SecurityGroup",
}


def _unexpected(matches: list[Any]) -> list[str]:
    return [
        f"{m.rule.id} line {m.linenumber}: {m.message}"
        for m in matches
        if m.rule.id not in ALLOWED_LINT_FINDINGS
    ]


def test_the_logical_ids_others_rely_on_exist(template: dict[str, Any]) -> None:
    actual = {name: template["Resources"].get(name, {}).get("Type") for name in EXPECTED_RESOURCES}
    assert actual == EXPECTED_RESOURCES


def test_template_lints_clean(template_lint: list[Any]) -> None:
    assert _unexpected(template_lint) == []


def test_transformed_template_lints_clean(transformed: dict[str, Any], transformed_lint: list[Any]) -> None:
    # Includes E3004 (circular dependency), which only shows once SAM has generated roles and mappings.
    assert transformed["Resources"]["IngestFunctionRole"]["Type"] == "AWS::IAM::Role"
    assert _unexpected(transformed_lint) == []


def test_a_bucket_arn_taken_from_the_bucket_itself_is_reported_as_a_cycle(template: dict[str, Any]) -> None:
    # Given the queue policy pointing at the bucket with !GetAtt (the bucket waits for the policy)
    broken = json.loads(json.dumps(template))
    condition = broken["Resources"]["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0][
        "Condition"
    ]
    condition["ArnLike"]["aws:SourceArn"] = {"Fn::GetAtt": ["DocumentsBucket", "Arn"]}

    # When the transformed template is linted, then the cycle is found: the check is live.
    assert "E3004" in {m.rule.id for m in lint(json.dumps(sam_transform(broken)))}


def test_transform_replaces_serverless_resources(transformed: dict[str, Any]) -> None:
    types = {r["Type"] for r in transformed["Resources"].values()}
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    assert {"AWS::Lambda::Function", "AWS::Lambda::LayerVersion", "AWS::Lambda::EventSourceMapping"} <= types


def _handler_names(module: Path) -> set[str]:
    """Names bound at module scope: `def handler`, `handler = ...`, `from x import handler`."""
    names: set[str] = set()
    for node in ast.parse(module.read_text(), filename=str(module)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _functions(template: dict[str, Any]) -> list[str]:
    return [name for name, _ in resources_of_type(template, "AWS::Serverless::Function")]


@pytest.mark.parametrize("logical_id", _functions(load_template(TEMPLATE)))
def test_function_code_and_handler_resolve(template: dict[str, Any], logical_id: str) -> None:
    props = function_properties(template, logical_id)
    code = ROOT / props["CodeUri"]
    if behind_web_adapter(props):  # the Handler is the start script the Web Adapter's bootstrap runs
        script = code / props["Handler"]
        assert script.is_file() and os.access(script, os.X_OK), f"{logical_id}: {script} must be executable"
        module, attribute = re.search(r"uvicorn (\w+):(\w+)", script.read_text()).groups()  # type: ignore[union-attr]
        assert attribute in _handler_names(code / f"{module}.py"), f"{logical_id}: {module}.py defines no {attribute}"
        return
    module_name, _, attribute = props["Handler"].rpartition(".")
    module = code / Path(*module_name.split(".")).with_suffix(".py")

    assert code.is_dir(), f"{logical_id}: CodeUri {props['CodeUri']} is not a folder"
    assert module.is_file(), f"{logical_id}: Handler {props['Handler']} needs {module.relative_to(ROOT)}"
    assert attribute in _handler_names(module), (
        f"{logical_id}: {module.relative_to(ROOT)} defines no {attribute!r}"
    )


def test_functions_share_the_layer_runtime_and_architecture(template: dict[str, Any]) -> None:
    layer = template["Resources"]["CommonLayer"]["Properties"]
    for logical_id in _functions(template):
        props = function_properties(template, logical_id)
        assert {"Ref": "CommonLayer"} in props["Layers"], logical_id
        assert props["Runtime"] in layer["CompatibleRuntimes"], logical_id
        assert set(props["Architectures"]) <= set(layer["CompatibleArchitectures"]), logical_id
        assert props["Tracing"] == "Active", logical_id


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_function_environment_names_real_settings(template: dict[str, Any], stage: str) -> None:
    # Settings ignores unknown variables, so a misspelt STRATUS_* name would silently fall back.
    fields = set(Settings.model_fields)
    defaults = {name: p.get("Default") for name, p in template["Parameters"].items()} | {"Stage": stage}
    exporting = {"OtelExporterEndpoint": "xray",
                 "OtelExporterHeadersSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:otlp-AbCdEf"}
    # with the parameters' defaults (no trace export: those variables are left out), then exporting
    for parameters in (defaults, defaults | exporting):
        conditions = Resolver(template, stack_name="s", region="eu-west-1", account_id="1", parameters=parameters)

        def value(v: Any, parameters: dict[str, Any] = parameters, conditions: Resolver = conditions) -> Any:
            # parameters resolve to their values, !If to its branch, other intrinsics to a placeholder
            if isinstance(v, dict) and "Fn::If" in v:
                name, yes, no = v["Fn::If"]
                return value(yes if conditions.condition(name) else no)
            if isinstance(v, dict) and v.get("Ref") == "AWS::NoValue":
                return NO_VALUE
            if isinstance(v, dict) and "Ref" in v and v["Ref"] in parameters:
                return str(parameters[v["Ref"]])
            return v if isinstance(v, str) else "resolved-at-deploy"

        for logical_id in _functions(template):
            variables = function_properties(template, logical_id)["Environment"]["Variables"]
            settings = {
                n.removeprefix("STRATUS_").lower(): resolved
                for n, v in variables.items()
                if n.startswith("STRATUS_") and (resolved := value(v)) is not NO_VALUE
            }
            assert set(settings) - fields == set(), f"{logical_id}: no such setting"
            assert load_settings(**settings).env == stage
            assert ("otel_headers_secret_arn" in settings) == (parameters is not defaults), logical_id


# CloudWatch Logs' vended-log delivery actions have no resource-level permissions: AWS documents "*" for
# them (Step Functions needs them to deliver execution logs). Bedrock's Rerank has none either: its
# permissions page grants bedrock:Rerank on "*" and scopes the reranker model through bedrock:InvokeModel.
# Nothing else may use "*".
RESOURCELESS_ACTIONS = {
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    "bedrock:Rerank",
}


def test_functions_have_least_privilege_inline_policies(transformed: dict[str, Any]) -> None:
    roles = [r for r in transformed["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert roles
    for role in roles:
        for policy in role["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                assert statement["Effect"] == "Allow"
                actions = (
                    statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                )
                assert not any(a == "*" or a.endswith(":*") for a in actions), policy["PolicyName"]
                if statement["Resource"] == "*":
                    assert set(actions) <= RESOURCELESS_ACTIONS, policy["PolicyName"]


def test_outputs_name_what_operators_need(template: dict[str, Any]) -> None:
    assert {
        "DocumentsBucketName",
        "IngestQueueUrl",
        "IngestDeadLetterQueueUrl",
        "IngestFunctionArn",
        "RetrieveFunctionArn",
        "DatabaseEndpoint",
        "DatabaseSecretArn",
        "GatewayUrl",
        "QueryStateMachineArn",
    } <= set(template["Outputs"])
