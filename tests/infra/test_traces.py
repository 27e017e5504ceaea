"""The template's trace export: OtelExporterEndpoint off (nothing added), `xray` (X-Ray's OTLP endpoint,
SigV4-signed, xray:PutSpans granted) or a URL (any OTLP/HTTP backend); no function ships the X-Ray SDK."""

from __future__ import annotations

from typing import Any

from stratus.config import load_settings
from stratus_tools.local.cfn import NO_VALUE, Resolver
from stratus_tools.local.template import function_properties, resources_of_type

from .conftest import ROOT

REGION = "eu-west-1"


def _functions(template: dict[str, Any]) -> list[str]:
    return [logical_id for logical_id, _ in resources_of_type(template, "AWS::Serverless::Function")]


def _otel_variables(template: dict[str, Any], logical_id: str, endpoint: str) -> dict[str, str]:
    """The function's OTEL_* variables as CloudFormation resolves them for OtelExporterEndpoint=`endpoint`."""
    resolver = Resolver(template, stack_name="stratus", region=REGION, account_id="123456789012",
                        parameters={"OtelExporterEndpoint": endpoint})
    variables = function_properties(template, logical_id)["Environment"]["Variables"]
    resolved = {k: resolver.resolve(v) for k, v in variables.items() if k.startswith("OTEL_")}
    return {k: str(v) for k, v in resolved.items() if v is not NO_VALUE}


def test_the_export_parameters_default_to_off(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["OtelExporterEndpoint"]["Default"] == ""
    assert params["OtelTracesSampler"]["Default"] == "parentbased_always_on"
    assert template["Conditions"]["ExportsTracesToXRay"] == {"Fn::Equals": [{"Ref": "OtelExporterEndpoint"}, "xray"]}
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = {p for g in groups for p in g["Parameters"]}
    assert {"OtelExporterEndpoint", "OtelTracesSampler", "OtelTracesSamplerArg"} <= grouped


def test_without_an_endpoint_no_function_gets_an_otel_variable(template: dict[str, Any]) -> None:
    for logical_id in _functions(template):
        assert _otel_variables(template, logical_id, "") == {}, logical_id
    resolver = Resolver(template, stack_name="s", region=REGION, account_id="1", parameters={})
    assert not resolver.condition(template["Resources"]["XRayExportPolicy"]["Condition"])


def test_xray_exports_every_function_to_the_regions_otlp_endpoint_signed(template: dict[str, Any]) -> None:
    from stratus import telemetry

    for logical_id in _functions(template):
        variables = _otel_variables(template, logical_id, "xray")
        assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"https://xray.{REGION}.amazonaws.com", logical_id
        assert variables["OTEL_SERVICE_NAME"].startswith("stratus-")
        assert variables["OTEL_TRACES_SAMPLER"] == "parentbased_always_on"
        # What the function makes of them: X-Ray's traces URL, posted through a SigV4-signing session
        settings = load_settings(otel_endpoint=variables["OTEL_EXPORTER_OTLP_ENDPOINT"],
                                 otel_traces_sampler=variables["OTEL_TRACES_SAMPLER"],
                                 otel_traces_sampler_arg=variables["OTEL_TRACES_SAMPLER_ARG"])
        endpoint = telemetry.traces_endpoint(settings)
        assert endpoint == f"https://xray.{REGION}.amazonaws.com/v1/traces"
        session = telemetry.signing_session(endpoint, credentials=object())
        assert session is not None and session.auth.service == "xray" and session.auth.region == REGION
    names = {_otel_variables(template, f, "xray")["OTEL_SERVICE_NAME"] for f in _functions(template)}
    assert len(names) == len(_functions(template))  # one service per function


def test_another_backend_gets_its_url_and_no_signing(template: dict[str, Any]) -> None:
    from stratus import telemetry

    url = "https://otlp.example.com/otel"
    for logical_id in _functions(template):
        assert _otel_variables(template, logical_id, url)["OTEL_EXPORTER_OTLP_ENDPOINT"] == url
    assert telemetry.signing_session(f"{url}/v1/traces") is None
    resolver = Resolver(template, stack_name="s", region=REGION, account_id="1",
                        parameters={"OtelExporterEndpoint": url})
    assert not resolver.condition("ExportsTracesToXRay")


def test_the_xray_policy_grants_put_spans_to_every_functions_role(template: dict[str, Any],
                                                                   transformed: dict[str, Any]) -> None:
    policy = transformed["Resources"]["XRayExportPolicy"]
    assert policy["Condition"] == "ExportsTracesToXRay"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "xray:PutSpans" and statement["Effect"] == "Allow"
    attached = {r["Ref"] for r in policy["Properties"]["Roles"]}
    roles = {fn["Properties"]["Role"]["Fn::GetAtt"][0] for fn in transformed["Resources"].values()
             if fn["Type"] == "AWS::Lambda::Function"}
    assert roles and attached == roles


def test_lambda_tracing_stays_active_without_the_xray_sdk(template: dict[str, Any]) -> None:
    # Lambda, API Gateway and Step Functions record their own segments; the functions record nothing
    # through the X-Ray SDK, which no layer ships any more.
    assert template["Globals"]["Function"]["Tracing"] == "Active"
    assert "STRATUS_TRACING" not in template["Globals"]["Function"]["Environment"]["Variables"]
    for path in [ROOT / "requirements.lock", *sorted((ROOT / "layers").glob("*/requirements.txt"))]:
        pins = {line.split("==")[0].strip().lower().replace("_", "-") for line in path.read_text().splitlines()
                if "==" in line and not line.startswith("#")}
        assert "aws-xray-sdk" not in pins, path


def test_a_headers_secret_is_named_to_every_function_and_readable_by_it_alone(template: dict[str, Any],
                                                                              transformed: dict[str, Any]) -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:langfuse-otlp-AbCdEf"

    def variable(endpoint: str, secret: str, logical_id: str) -> Any:
        resolver = Resolver(template, stack_name="s", region=REGION, account_id="123456789012",
                            parameters={"OtelExporterEndpoint": endpoint, "OtelExporterHeadersSecretArn": secret})
        value = function_properties(template, logical_id)["Environment"]["Variables"]["STRATUS_OTEL_HEADERS_SECRET_ARN"]
        return resolver.resolve(value), resolver.condition("HasOtelHeadersSecret")

    for logical_id in _functions(template):
        assert variable("https://cloud.langfuse.com/api/public/otel", arn, logical_id) == (arn, True)
        assert variable("", arn, logical_id) == (NO_VALUE, False)  # not exporting: no secret read either
        assert variable("https://cloud.langfuse.com/api/public/otel", "", logical_id) == (NO_VALUE, False)
    assert load_settings(otel_headers_secret_arn=arn).otel_headers_secret_arn == arn
    policy = transformed["Resources"]["OtelHeadersSecretPolicy"]
    assert policy["Condition"] == "HasOtelHeadersSecret"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "secretsmanager:GetSecretValue"
    assert statement["Resource"] == {"Ref": "OtelExporterHeadersSecretArn"}  # that secret only
    assert {r["Ref"] for r in policy["Properties"]["Roles"]} == \
           {r["Ref"] for r in transformed["Resources"]["XRayExportPolicy"]["Properties"]["Roles"]}


def test_the_parameters_refuse_what_the_functions_would_refuse(template: dict[str, Any]) -> None:
    import re

    endpoint = re.compile(template["Parameters"]["OtelExporterEndpoint"]["AllowedPattern"])
    secret = re.compile(template["Parameters"]["OtelExporterHeadersSecretArn"]["AllowedPattern"])
    for ok in ("", "xray", "http://10.0.0.5:4318", "https://cloud.langfuse.com/api/public/otel"):
        assert endpoint.fullmatch(ok), ok
    for bad in ("localhost:4318", "XRAY", "https://", "ftp://x"):  # the settings want http(s) URLs
        assert not endpoint.fullmatch(bad), bad
    assert secret.fullmatch("") and secret.fullmatch("arn:aws:secretsmanager:eu-west-1:123456789012:secret:k-AbCdEf")
    assert not secret.fullmatch("langfuse-key") and not secret.fullmatch("arn:aws:ssm:eu-west-1:123456789012:x")
