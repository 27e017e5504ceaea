"""What the contract tier and the cold-start benchmark share: the template's functions as processes over
a local stack, with the tier's overrides (tests/lambda_contract/conftest.py says why each exists), and the
deploy step that runs first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.lambda_contract.environment import function_spec, layer_folder
from tests.lambda_contract.process import FunctionProcess

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".stratus" / "lambda-contract"
FUNCTIONS = ("GatewayFunction", "RetrieveFunction", "GenerateFunction", "GuardFunction", "IngestFunction",
             "EvalSamplerFunction", "MigrateFunction", "GuardMultilingualFunction")
# DATABASE_URL replaces the proxy endpoint and the secret the template names.
UNSET = frozenset({"STRATUS_DATABASE_SECRET_ARN", "STRATUS_DATABASE_PROXY_ENDPOINT"})


def overrides(stack: Any, pooler: Any) -> dict[str, str]:
    """AWS is moto on loopback; the database is the embedded server, the application role through
    PgBouncer in transaction mode (as RDS Proxy multiplexes it); no provider is reachable."""
    return {
        "STRATUS_AWS_ENDPOINT_URL": stack.endpoint_url, "AWS_ACCESS_KEY_ID": "stratus-local",
        "AWS_SECRET_ACCESS_KEY": "stratus-local", "AWS_SESSION_TOKEN": "contract",
        "DATABASE_URL": stack.database_url, "STRATUS_DATABASE_APP_URL": pooler.url,
        "STRATUS_PROVIDER_MODE": "offline",
    }


def function_processes(stack: Any, pooler: Any, template: dict[str, Any], builds: dict[str, Any],
                       names: tuple[str, ...], *, xray_daemon: str, logs: Path,
                       extra: dict[str, dict[str, str]] | None = None) -> dict[str, FunctionProcess]:
    """One process per function (not started: the first invocation starts it), `extra` adding variables
    per logical id."""
    common = overrides(stack, pooler)
    processes = {}
    for logical_id in names:
        spec = function_spec(template, logical_id, stack.resources.resolver, stack.function_name(logical_id),
                             common | (extra or {}).get(logical_id, {}), UNSET)
        layers = [layer_folder(layer, template, builds["layers"]) for layer in spec.layers]
        processes[logical_id] = FunctionProcess(spec, layers, builds["runtime"], region=stack.region,
                                                xray_daemon=xray_daemon, logs=logs / f"{logical_id}.log")
    return processes


def deploy_migrations(migrate: FunctionProcess) -> dict[str, Any]:
    """What a deploy runs before the stack is ready: the DatabaseMigrations custom resource's Create, its
    answer PUT to the presigned ResponseURL (here a loopback server) as CloudFormation would receive it."""
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
