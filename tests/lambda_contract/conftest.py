"""The Lambda-contract tier: every function in its own process under the real Runtime Interface Client.

One local stack per session plays AWS (moto for S3, SQS, Step Functions and Secrets Manager, built from
template.yaml; embedded PostgreSQL), deployed with OtelExporterEndpoint set to a loopback OTLP/HTTP receiver
that collects every function's spans. A loopback X-Ray daemon listens where Lambda's (Tracing: Active) would:
the functions must send it nothing, as no X-Ray SDK records there any more. Each function
gets its own process (tests/lambda_contract/process.py) with only its layers on sys.path and the
environment the template gives it for the dev stage; moto's Lambda hook routes Step Functions tasks,
SQS batches and direct invokes to those processes.

What the tier overrides in the template's environment, and why (everything else is the template's):
- STRATUS_AWS_ENDPOINT_URL and credentials: AWS is moto on loopback (Lambda gives a function its role's
  credentials the same way, as variables);
- DATABASE_URL (the owner, for the migrate function) and STRATUS_DATABASE_APP_URL (stratus_app through
  PgBouncer in transaction mode, the stand-in for RDS Proxy): the embedded server instead of Aurora;
- STRATUS_DATABASE_SECRET_ARN, STRATUS_DATABASE_PROXY_ENDPOINT: unset, as DATABASE_URL replaces them;
- STRATUS_PROVIDER_MODE=offline: no provider can be reached from here; the offline provider answers —
  except in the gateway, whose `fast` alias is a loopback OpenAI server (its key stored in ProviderSecret,
  as on AWS) so that streamed answers come from a real provider wire protocol at a pace a test can set,
  with ProviderEgress as `nat` (the loopback server stands for the internet).

Clients reach the gateway as on AWS: through GatewayApi's stage (tests/lambda_contract/api_gateway.py, a
REST API with a streaming Lambda proxy integration), the gateway's own run.sh under uvicorn, and the
tier's stand-in for the Lambda Web Adapter between the two (tests/lambda_contract/web_adapter.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lambda_contract.api_gateway import RestApiStage
from tests.lambda_contract.environment import build_layers, build_runtime
from tests.lambda_contract.otlp import OTLP_HEADERS, OTLPCollector
from tests.lambda_contract.process import FunctionProcess, ProcessBackedFunction
from tests.lambda_contract.stack import CACHE, FUNCTIONS, ROOT, deploy_migrations, function_processes
from tests.lambda_contract.xray import XRayCollector
from tests.support.upstreams import OpenAIUpstream


@pytest.fixture(scope="session")
def lambda_builds() -> dict[str, Any]:
    """The layers (native builds of the deploy's recipes) and the runtime's own packages."""
    return {"layers": build_layers(CACHE / "layers"), "runtime": build_runtime(CACHE)}


@pytest.fixture(scope="session")
def xray() -> Iterator[XRayCollector]:
    """Where Lambda's X-Ray daemon would listen (AWS_XRAY_DAEMON_ADDRESS): nothing may arrive."""
    collector = XRayCollector().start()
    yield collector
    collector.stop()


@pytest.fixture(scope="session")
def otlp() -> Iterator[OTLPCollector]:
    """Where every function's OpenTelemetry spans go (OTEL_EXPORTER_OTLP_ENDPOINT)."""
    collector = OTLPCollector().start()
    yield collector
    collector.stop()


@pytest.fixture(scope="session")
def upstream() -> Iterator[OpenAIUpstream]:
    """The provider behind the gateway's `fast` alias; tests set `chunk_interval_s` to slow its streams."""
    with OpenAIUpstream() as up:
        yield up


# Package scope: the stack (one LocalStack per process) stops when this tier's tests end, so tiers that
# start their own stack can run after it in the same session.
@pytest.fixture(scope="package")
def contract_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   lambda_builds: dict[str, Any], xray: XRayCollector, upstream: OpenAIUpstream,
                   otlp: OTLPCollector) -> Iterator[Any]:
    """The local stack with every template function running in its own RIC process, exporting its
    OpenTelemetry spans to the loopback OTLP receiver."""
    from stratus.config import load_settings
    from stratus_tools.local import lambdas
    from stratus_tools.local.stack import LocalStack
    from stratus_tools.local.template import load_template

    data = tmp_path_factory.mktemp("contract")
    # The stack's data folder goes when the tier ends (the template's functions reach it by path; a
    # folder per process keeps parallel runs apart).
    data_dir = ROOT / ".stratus" / f"contract-{os.getpid()}"
    request.addfinalizer(lambda: shutil.rmtree(data_dir, ignore_errors=True))
    settings = load_settings(data_dir=str(data_dir))
    template = load_template(ROOT / "template.yaml")
    from stratus_tools.local.pgbouncer import pgbouncer

    # The template's own OTEL_* variables (OtelExporterEndpoint), not an override: what a deploy gets.
    parameters = {"Stage": "dev", "OtelExporterEndpoint": otlp.url}
    with LocalStack(settings, parameters=parameters, retry_delay_s=1) as stack, \
            pgbouncer(stack.database_url, pool_size=4) as pooler:
        stack.pooler = pooler
        _headers_secret(stack)
        extra: dict[str, dict[str, str]] = {name: {} for name in FUNCTIONS}
        extra["GatewayFunction"].update(_gateway_provider(stack, upstream, data))
        processes = function_processes(stack, pooler, template, lambda_builds, FUNCTIONS, xray_daemon=xray.address,
                                       logs=data, extra=extra)
        for process in processes.values():
            lambdas.register(ProcessBackedFunction(process))  # type: ignore[arg-type]
        stack.processes = processes
        stack.migration = deploy_migrations(processes["MigrateFunction"])
        try:
            yield stack
        finally:
            for process in processes.values():
                process.close()


@pytest.fixture(scope="package")
def functions(contract_stack: Any) -> dict[str, FunctionProcess]:
    return contract_stack.processes


@pytest.fixture(scope="package")
def api(functions: dict[str, FunctionProcess]) -> Iterator[RestApiStage]:
    """GatewayApi's `dev` stage: its `url` is the GatewayUrl output, `url + "v1"` the SDKs' base_url."""
    stage = RestApiStage(functions["GatewayFunction"], stage="dev").start()
    yield stage
    stage.stop()


def _gateway_provider(stack: Any, upstream: OpenAIUpstream, folder: Path) -> dict[str, str]:
    """The gateway's `fast` alias on the loopback OpenAI server, its key in ProviderSecret as on AWS."""
    import json

    catalog = {"default_alias": "fast",
               "deployments": {"loop-openai": {"provider": "openai", "model": "gpt-loop", "base_url": upstream.base_url,
                                               "timeout_s": 5, "max_output_tokens": 500,
                                               "price": {"input": 2.0, "output": 8.0}}},
               "aliases": {"fast": ["loop-openai"]}}
    models = folder / "models.json"
    models.write_text(json.dumps(catalog))  # JSON is YAML
    secret = stack.resources.resolver.resolve({"Ref": "ProviderSecret"})
    stack.client("secretsmanager").put_secret_value(SecretId=secret, SecretString=json.dumps({"openai": "sk-loop"}))
    return {"STRATUS_PROVIDER_MODE": "hosted", "STRATUS_MODELS_FILE": str(models), "STRATUS_PROVIDER_EGRESS": "nat"}


def _headers_secret(stack: Any) -> None:
    """The exporter's headers in a secret, its ARN as OtelExporterHeadersSecretArn: the operator creates the
    secret before the deploy, so the parameter is set before any function's environment is resolved."""
    import json

    arn = stack.client("secretsmanager").create_secret(Name="otlp-headers",
                                                       SecretString=json.dumps(OTLP_HEADERS))["ARN"]
    resolver = stack.resources.resolver
    resolver.values["OtelExporterHeadersSecretArn"] = arn
    resolver._conditions.clear()  # conditions decided with the parameter empty are decided again
