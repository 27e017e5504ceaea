"""The gateway's wiring: one REST API whose catch-all routes reach GatewayFunction through a streaming
Lambda proxy integration, the Web Adapter in front of the app, the function ending before API Gateway gives
up, the rights it needs (sync workflow runs, tenant document writes) and no more, and no dependency cycle."""

from __future__ import annotations

from typing import Any

from stratus_tools.local.template import function_properties, resources_of_type

# A streamed integration may run up to 15 minutes (buffered ones stop at 29 s).
STREAM_MAX_INTEGRATION_MS = 900_000
ADAPTER_LAYER = "layer:LambdaAdapterLayerArm64:"


def _gateway(template: dict[str, Any]) -> dict[str, Any]:
    return function_properties(template, "GatewayFunction")


def _integrations(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    paths = template["Resources"]["GatewayApi"]["Properties"]["DefinitionBody"]["paths"]
    return {path: methods["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]
            for path, methods in paths.items()}


def _statements(transformed: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = transformed["Resources"][role]["Properties"].get("Policies", [])
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_every_path_and_method_streams_from_the_gateway_function(template: dict[str, Any]) -> None:
    integrations = _integrations(template)
    assert set(integrations) == {"/", "/{proxy+}"}
    for integration in integrations.values():
        assert (integration["type"], integration["httpMethod"]) == ("aws_proxy", "POST")
        assert integration["responseTransferMode"] == "STREAM"
        uri = integration["uri"]["Fn::Sub"]
        # InvokeWithResponseStream: its own API version and action in the integration URI
        assert uri.endswith("/2021-11-15/functions/${GatewayFunction.Arn}/response-streaming-invocations"), uri
        assert integration["timeoutInMillis"] <= STREAM_MAX_INTEGRATION_MS
    assert "Events" not in template["Resources"]["GatewayFunction"]["Properties"]  # the API owns the routes


def test_api_gateway_may_invoke_the_gateway_and_nothing_else(transformed: dict[str, Any]) -> None:
    permissions = [r["Properties"] for r in transformed["Resources"].values() if r["Type"] == "AWS::Lambda::Permission"]
    from_api = [p for p in permissions if p["Principal"] == "apigateway.amazonaws.com"]
    assert [p["FunctionName"] for p in from_api] == [{"Ref": "GatewayFunction"}]
    assert from_api[0]["Action"] == "lambda:InvokeFunction"  # the action InvokeWithResponseStream checks
    assert "${GatewayApi}" in from_api[0]["SourceArn"]["Fn::Sub"]


def test_the_web_adapter_serves_the_app_and_streams(template: dict[str, Any]) -> None:
    props = _gateway(template)
    variables = props["Environment"]["Variables"]
    assert props["Handler"] == "run.sh" and props["CodeUri"] == "functions/gateway/"
    assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert variables["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert variables["AWS_LWA_READINESS_CHECK_PATH"] == "/health/live"  # not the database's health
    adapter = [layer for layer in props["Layers"] if isinstance(layer, dict) and ADAPTER_LAYER in str(layer)]
    assert len(adapter) == 1 and "arn:${AWS::Partition}:lambda:${AWS::Region}:753240598075:" in adapter[0]["Fn::Sub"]


def test_the_function_ends_before_api_gateway_gives_up(template: dict[str, Any]) -> None:
    props = _gateway(template)
    integration_s = min(i["timeoutInMillis"] for i in _integrations(template).values()) / 1000
    assert props["Timeout"] < integration_s
    # Answers stop before the function is killed, so the caller gets the gateway's own typed error: a
    # non-streamed one at the generation deadline, a stream at the stream deadline.
    variables = props["Environment"]["Variables"]
    assert float(variables["STRATUS_GENERATION_DEADLINE_S"]) < float(variables["STRATUS_STREAM_DEADLINE_S"])
    assert float(variables["STRATUS_STREAM_DEADLINE_S"]) < props["Timeout"]


def test_the_gateway_and_its_api_keep_their_xray_segments(template: dict[str, Any]) -> None:
    # API Gateway's and Lambda's own segments; the gateway's spans join their trace (stratus.lambda_web).
    props = _gateway(template)
    assert props["Tracing"] == "Active"
    assert template["Resources"]["GatewayApi"]["Properties"]["TracingEnabled"] is True


def test_the_api_has_no_cors_logs_access_and_throttles(template: dict[str, Any]) -> None:
    api = template["Resources"]["GatewayApi"]
    assert api["Type"] == "AWS::Serverless::Api"
    props = api["Properties"]
    assert "Cors" not in props and props["EndpointConfiguration"] == {"Type": "REGIONAL"}
    assert props["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["GatewayAccessLogGroup", "Arn"]}
    assert "$context.requestId" in props["AccessLogSetting"]["Format"]
    assert "authorization" not in props["AccessLogSetting"]["Format"].lower()  # keys stay out of the logs
    # Access logs expire: 30 days in dev, 90 in prod (tests/infra/test_observability.py checks every group).
    assert template["Resources"]["GatewayAccessLogGroup"]["Properties"]["RetentionInDays"] == {
        "Fn::If": ["IsProd", 90, 30]}
    (throttling,) = props["MethodSettings"]
    assert (throttling["ResourcePath"], throttling["HttpMethod"]) == ("/*", "*")
    assert throttling["ThrottlingRateLimit"] > 0 and throttling["ThrottlingBurstLimit"] > 0


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


def test_the_gateway_url_is_the_stage_root(template: dict[str, Any]) -> None:
    url = template["Outputs"]["GatewayUrl"]["Value"]["Fn::Sub"]
    assert url == "https://${GatewayApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}/"
