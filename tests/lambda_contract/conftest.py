"""The Lambda-contract tier: every function in its own process under the real Runtime Interface Client.

One local stack per session plays AWS (moto for S3, SQS, Step Functions and Secrets Manager, built from
template.yaml; embedded PostgreSQL), and a loopback X-Ray daemon collects the segments. Each function
gets its own process (tests/lambda_contract/process.py) with only its layers on sys.path and the
environment the template gives it for the dev stage; moto's Lambda hook routes Step Functions tasks,
SQS batches and direct invokes to those processes.

What the tier overrides in the template's environment, and why (everything else is the template's):
- STRATUS_AWS_ENDPOINT_URL and credentials: AWS is moto on loopback (Lambda gives a function its role's
  credentials the same way, as variables);
- DATABASE_URL (the owner, for the migrate function) and STRATUS_DATABASE_APP_URL (stratus_app through
  PgBouncer in transaction mode, the stand-in for RDS Proxy): the embedded server instead of Aurora;
- STRATUS_DATABASE_SECRET_ARN, STRATUS_DATABASE_PROXY_ENDPOINT: unset, as DATABASE_URL replaces them;
- STRATUS_PROVIDER_MODE=offline: no provider can be reached from here; the offline provider answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lambda_contract.environment import build_layers, build_runtime, function_spec, layer_folder
from tests.lambda_contract.process import FunctionProcess, ProcessBackedFunction
from tests.lambda_contract.xray import XRayCollector

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".stratus" / "lambda-contract"
FUNCTIONS = ("GatewayFunction", "RetrieveFunction", "GenerateFunction", "GuardFunction", "IngestFunction",
             "EvalSamplerFunction", "MigrateFunction")


@pytest.fixture(scope="session")
def lambda_builds() -> dict[str, Any]:
    """The layers (native builds of the deploy's recipes) and the runtime's own packages."""
    return {"layers": build_layers(CACHE / "layers"), "runtime": build_runtime(CACHE)}


@pytest.fixture(scope="session")
def xray() -> Iterator[XRayCollector]:
    collector = XRayCollector().start()
    yield collector
    collector.stop()


# Package scope: the stack (one LocalStack per process) stops when this tier's tests end, so tiers that
# start their own stack can run after it in the same session.
@pytest.fixture(scope="package")
def contract_stack(tmp_path_factory: pytest.TempPathFactory, lambda_builds: dict[str, Any],
                   xray: XRayCollector) -> Iterator[Any]:
    """The local stack with every template function running in its own RIC process."""
    from stratus.config import load_settings
    from stratus.local import lambdas
    from stratus.local.stack import LocalStack
    from stratus.local.template import load_template

    data = tmp_path_factory.mktemp("contract")
    settings = load_settings(data_dir=str(ROOT / ".stratus" / f"contract-{os.getpid()}"))
    template = load_template(ROOT / "template.yaml")
    from stratus.local.pgbouncer import pgbouncer

    with LocalStack(settings, parameters={"Stage": "dev"}, retry_delay_s=1) as stack, \
            pgbouncer(stack.database_url, pool_size=4) as pooler:
        overrides = {
            "STRATUS_AWS_ENDPOINT_URL": stack.endpoint_url, "AWS_ACCESS_KEY_ID": "stratus-local",
            "AWS_SECRET_ACCESS_KEY": "stratus-local", "AWS_SESSION_TOKEN": "contract",
            # The owner login (only the migrate function uses it) and the application role's, through
            # PgBouncer in transaction mode as RDS Proxy multiplexes it: nothing may rely on session state.
            "DATABASE_URL": stack.database_url, "STRATUS_DATABASE_APP_URL": pooler.url,
            "STRATUS_PROVIDER_MODE": "offline",
        }
        stack.pooler = pooler
        unset = frozenset({"STRATUS_DATABASE_SECRET_ARN", "STRATUS_DATABASE_PROXY_ENDPOINT"})
        processes: dict[str, FunctionProcess] = {}
        for logical_id in FUNCTIONS:
            name = stack.function_name(logical_id)
            spec = function_spec(template, logical_id, stack.resources.resolver, name, overrides, unset)
            layers = [layer_folder(layer, template, lambda_builds["layers"]) for layer in spec.layers]
            process = FunctionProcess(spec, layers, lambda_builds["runtime"], region=stack.region,
                                      xray_daemon=xray.address, logs=data / f"{logical_id}.log")
            processes[logical_id] = process
            lambdas.register(ProcessBackedFunction(process))  # type: ignore[arg-type]
        stack.processes = processes
        stack.migration = _deploy_migrations(processes["MigrateFunction"])
        try:
            yield stack
        finally:
            for process in processes.values():
                process.close()


@pytest.fixture(scope="package")
def functions(contract_stack: Any) -> dict[str, FunctionProcess]:
    return contract_stack.processes


def _deploy_migrations(migrate: FunctionProcess) -> dict[str, Any]:
    """What a deploy runs before the stack is ready: the DatabaseMigrations custom resource's Create, its
    answer PUT to the presigned ResponseURL (here a loopback server) as CloudFormation would receive it."""
    import json

    from tests.integration.cfn_support import ResponseUrl

    response_url = ResponseUrl()
    try:
        event = json.loads((ROOT / "events" / "migrate_create.json").read_text())
        invocation = migrate.invoke({**event, "ResponseURL": response_url.url})
    finally:
        response_url.stop()
    answers = response_url.answers
    assert invocation.error_type is None and answers, (invocation.body, migrate.log_text()[-3000:])
    assert answers[0]["Status"] == "SUCCESS", answers[0]
    return answers[0]
