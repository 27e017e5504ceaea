"""The gateway's wiring: one HTTP API routing everything to GatewayFunction within API Gateway's 30 s, the
rights it needs (sync workflow runs, tenant document writes) and no more, and no dependency cycle."""

from __future__ import annotations

from typing import Any

from stratus.local.template import function_properties, resources_of_type

# API Gateway's integration timeout for HTTP APIs cannot exceed 30 s.
HTTP_API_MAX_INTEGRATION_MS = 30_000


def _gateway(template: dict[str, Any]) -> dict[str, Any]:
    return function_properties(template, "GatewayFunction")


def _statements(transformed: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = transformed["Resources"][role]["Properties"].get("Policies", [])
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_every_path_and_method_reaches_the_gateway_function(template: dict[str, Any]) -> None:
    events = _gateway(template)["Events"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values()}
    assert routes == {("ANY", "/"), ("ANY", "/{proxy+}")}
    for event in events.values():
        assert event["Type"] == "HttpApi"
        assert event["Properties"]["ApiId"] == {"Ref": "GatewayApi"}
        assert event["Properties"]["TimeoutInMillis"] <= HTTP_API_MAX_INTEGRATION_MS


def test_the_function_ends_before_api_gateway_gives_up(template: dict[str, Any]) -> None:
    props = _gateway(template)
    integration_s = min(e["Properties"]["TimeoutInMillis"] for e in props["Events"].values()) / 1000
    assert props["Handler"] == "app.handler" and props["CodeUri"] == "functions/gateway/"
    assert props["Timeout"] < integration_s
    # In-process generation (plain chat) stops before the function is killed, so the caller gets an error
    # in the API's shape rather than API Gateway's bare 503.
    assert float(props["Environment"]["Variables"]["STRATUS_GENERATION_DEADLINE_S"]) < props["Timeout"]


def test_the_gateway_traces_when_lambda_tracing_is_active(template: dict[str, Any]) -> None:
    props = _gateway(template)
    assert props["Tracing"] == "Active"
    assert props["Environment"]["Variables"]["STRATUS_TRACING"] == "true"


def test_the_http_api_has_no_cors_logs_access_and_throttles(template: dict[str, Any]) -> None:
    api = template["Resources"]["GatewayApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    props = api["Properties"]
    assert "CorsConfiguration" not in props
    assert props["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["GatewayAccessLogGroup", "Arn"]}
    assert "$context.requestId" in props["AccessLogSettings"]["Format"]
    assert "authorization" not in props["AccessLogSettings"]["Format"].lower()  # keys stay out of the logs
    # Access logs expire: 30 days in dev, 90 in prod (tests/infra/test_observability.py checks every group).
    assert template["Resources"]["GatewayAccessLogGroup"]["Properties"]["RetentionInDays"] == {
        "Fn::If": ["IsProd", 90, 30]}
    throttling = props["DefaultRouteSettings"]
    assert throttling["ThrottlingRateLimit"] > 0 and throttling["ThrottlingBurstLimit"] > 0


def test_the_transformed_api_proxies_with_payload_v2(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    paths = resources["GatewayApi"]["Properties"]["Body"]["paths"]
    assert set(paths) == {"/", "/{proxy+}"}
    for path in paths.values():
        integration = path["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]
        assert (integration["type"], integration["payloadFormatVersion"]) == ("aws_proxy", "2.0")
    permissions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert {p["FunctionName"]["Ref"] for p in permissions if p["Principal"] == "apigateway.amazonaws.com"} == {
        "GatewayFunction"
    }


def test_only_the_gateway_knows_the_state_machine(template: dict[str, Any]) -> None:
    # The state machine refers to the task functions: the ARN in Globals (or on a task) would be a cycle.
    assert "STRATUS_QUERY_STATE_MACHINE_ARN" not in template["Globals"]["Function"]["Environment"]["Variables"]
    holders = {
        logical_id
        for logical_id, _ in resources_of_type(template, "AWS::Serverless::Function")
        if "STRATUS_QUERY_STATE_MACHINE_ARN" in function_properties(template, logical_id)["Environment"]["Variables"]
    }
    assert holders == {"GatewayFunction"}
    assert _gateway(template)["Environment"]["Variables"]["STRATUS_QUERY_STATE_MACHINE_ARN"] == {
        "Ref": "QueryStateMachine"
    }


def test_the_gateway_may_run_the_workflow_synchronously_and_nothing_else_may(transformed: dict[str, Any]) -> None:
    roles = [lid for lid, r in transformed["Resources"].items() if r["Type"] == "AWS::IAM::Role"]
    runners = {
        role: s for role in roles for s in _statements(transformed, role)
        if any(a.startswith("states:") for a in _actions(s))
    }
    assert set(runners) == {"GatewayFunctionRole"}
    statement = runners["GatewayFunctionRole"]
    assert _actions(statement) == ["states:StartSyncExecution"]
    assert statement["Resource"] == {"Ref": "QueryStateMachine"}


def test_the_gateway_writes_documents_only_in_tenant_space(transformed: dict[str, Any]) -> None:
    s3 = [s for s in _statements(transformed, "GatewayFunctionRole") if any(a.startswith("s3:") for a in _actions(s))]
    assert len(s3) == 2
    objects = next(s for s in s3 if "s3:PutObject" in _actions(s))
    assert sorted(_actions(objects)) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert objects["Resource"] == {"Fn::Sub": "${DocumentsBucket.Arn}/tenants/*"}
    listing = next(s for s in s3 if _actions(s) == ["s3:ListBucket"])
    assert listing["Condition"] == {"StringLike": {"s3:prefix": "tenants/*"}}


def test_the_gateway_reads_the_provider_secret_and_may_call_bedrock(template: dict[str, Any]) -> None:
    policies = _gateway(template)["Policies"]
    secrets = {p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]["Ref"]
               for p in policies if "AWSSecretsManagerGetSecretValuePolicy" in p}
    assert secrets == {"ProviderSecret"}  # the database: stratus_app through RDS Proxy (DatabaseConnectPolicy)
    bedrock = [s for p in policies for s in p.get("Statement", []) if s.get("Sid") == "InvokeBedrockModels"]
    generate = [s for p in function_properties(template, "GenerateFunction")["Policies"]
                for s in p.get("Statement", []) if s.get("Sid") == "InvokeBedrockModels"]
    assert bedrock == generate and bedrock


def test_the_private_network_reaches_synchronous_step_functions(template: dict[str, Any]) -> None:
    # StartSyncExecution is served by sync-states.<region>, a separate endpoint service from states.
    services = {
        r["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[-1]: r["Properties"]
        for _, r in resources_of_type(template, "AWS::EC2::VPCEndpoint")
    }
    assert services["sync-states"]["VpcEndpointType"] == "Interface"
    assert services["sync-states"]["PrivateDnsEnabled"] is True


def test_the_gateway_url_is_an_output(template: dict[str, Any]) -> None:
    url = template["Outputs"]["GatewayUrl"]["Value"]["Fn::Sub"]
    assert url.startswith("https://${GatewayApi}.execute-api.") and url.endswith("/")
