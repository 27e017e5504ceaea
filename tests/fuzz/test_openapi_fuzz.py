"""The gateway fuzzed from its own OpenAPI document (schemathesis, in-process over ASGI).

Every operation gets schema-valid (positive) and schema-breaking (negative) requests, sent with the keys
of two tenants in turn; every response must be documented: no 5xx but a declared 503, no status the
document does not list for the operation, bodies and content types as declared. Seeded (derandomize) so a
run is reproducible; bounded by examples per operation and mode and by a wall-time budget.

`make fuzz` runs it longer (STRATUS_FUZZ_EXAMPLES) and writes its figures (STRATUS_FUZZ_REPORT).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.gateway_support import tenant_with_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("STRATUS_FUZZ_EXAMPLES", "50"))  # per operation and mode
BUDGET_S = float(os.environ.get("STRATUS_FUZZ_BUDGET_S", "100"))  # the whole run: stop generating after it
REPORT = os.environ.get("STRATUS_FUZZ_REPORT")  # where to write the run's figures (JSON)
SCOPES = ("inference", "documents", "admin")


@pytest.fixture(scope="module")
def app(pg_url: str) -> Iterator[Any]:
    """The gateway on the local stack (S3 stand-in for the documents routes, the offline provider)."""
    from stratus.config import load_settings
    from stratus.gateway.app import create_app
    from stratus_tools.local.stack import LocalStack

    with LocalStack(load_settings(data_dir=ROOT / ".stratus" / "test-fuzz")):
        yield create_app()


def _server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """5xx is a failure unless the operation documents it (503: a dependency is unavailable)."""
    from schemathesis.core.failures import ServerError

    status = response.status_code
    if status >= 500 and str(status) not in case.operation.definition.raw.get("responses", {}):
        raise ServerError(operation=case.operation.label, status_code=status)
    return None


def test_every_response_is_documented(app: Any, pg_url: str) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.specs.openapi import checks

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    keys = [tenant_with_key(pg_url, prefix, scopes=SCOPES)[1] for prefix in ("fuzz-a", "fuzz-b")]
    run_checks = [_server_error, checks.status_code_conformance, checks.content_type_conformance,
                  checks.response_schema_conformance]
    started, failures = time.monotonic(), []
    statuses: dict[str, int] = {}

    def fuzz_operation(strategy: Any, where: str) -> int:
        """Run one operation's cases; returns how many were sent."""
        sent = 0

        @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            nonlocal sent
            if time.monotonic() - started > BUDGET_S:
                return
            sent += 1
            headers = {"Authorization": f"Bearer {keys[sent % 2]}"}  # the two tenants in turn
            try:
                response = case.call_and_validate(headers=headers, checks=run_checks)
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
            except Exception as err:  # noqa: BLE001 - collected: one run reports every failure
                failures.append(f"{where}: {str(err).strip()[:1500]}")

        try:
            fuzz()
        except Unsatisfiable:
            pass  # negative mode on an operation with nothing to break (no parameters, no body)
        return sent

    cases = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            if time.monotonic() - started <= BUDGET_S:
                cases += fuzz_operation(operation.as_strategy(generation_mode=mode), f"{operation.label} [{mode}]")
    figures = {"cases": cases, "failures": len(failures), "duration_s": round(time.monotonic() - started, 1),
               "examples_per_operation_and_mode": EXAMPLES, "budget_s": BUDGET_S,
               "statuses": dict(sorted(statuses.items())), "failure_details": failures[:50]}
    if REPORT:
        Path(REPORT).parent.mkdir(parents=True, exist_ok=True)
        Path(REPORT).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"fuzz: {cases} cases in {figures['duration_s']} s, {len(failures)} failures")
    assert cases > 0
    assert not failures, "\n\n".join(failures[:10])
