"""The gateway fuzzed from its own OpenAPI document (schemathesis, in-process over ASGI).

Every operation gets schema-valid (positive) and schema-breaking (negative) requests, sent with the keys
of two tenants in turn, and schema-valid requests with hostile values planted in every field (NUL, a lone
surrogate, integers past what the database stores: what schemathesis's UTF-8 strings never produce);
every response must be documented: no 5xx but a declared 503, no status the
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
EXAMPLES = int(os.environ.get("STRATUS_FUZZ_EXAMPLES", "25"))  # per operation and mode
BUDGET_S = float(os.environ.get("STRATUS_FUZZ_BUDGET_S", "60"))  # the whole run: stop generating after it
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


# Planted in every string, or every integer, of a schema-valid request: each must be refused as the client's
# error (4xx, documented), never reach PostgreSQL, a tokenizer or the embedder as a 500.
HOSTILE_TEXT = ("a\x00b", "a\ud800b", "\udfff", "x" * 3 + "\x00")
HOSTILE_INTS = (2**31, 2**63, -(2**31) - 1)
HOSTILE_EXAMPLES = int(os.environ.get("STRATUS_FUZZ_HOSTILE_EXAMPLES", "20"))  # per operation


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every string and integer in a decoded JSON value (dict keys excluded)."""
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, i))]
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return [(path, value)]
    return []


def _plant(value: Any, path: tuple[Any, ...], hostile: Any) -> Any:
    """A copy of `value` with the leaf at `path` replaced by `hostile` (one field at a time, so the rest of
    the request stays valid and the hostile value gets as far as it can)."""
    if not path:
        return hostile
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _plant(value[path[0]], path[1:], hostile)
    return copy


def test_hostile_values_in_every_field_are_the_clients_error(app: Any, pg_url: str) -> None:
    """Sent as a client would: the JSON body with \\u escapes (the only way a lone surrogate travels), NUL
    percent-encoded in a query string (a surrogate cannot be put in a URL at all)."""
    import schemathesis
    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, Phase, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    key = tenant_with_key(pg_url, "fuzz-h", scopes=SCOPES)[1]
    client = TestClient(app, raise_server_exceptions=False)
    failures: list[str] = []
    planted_total = 0

    for result in schema.get_all_operations():
        operation = result.ok()
        sent = 0

        @settings(max_examples=HOSTILE_EXAMPLES, derandomize=True, database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE))
        def hostile(case: Any) -> None:
            nonlocal sent, planted_total
            sent += 1
            body = case.body if isinstance(case.body, dict | list) else None
            query = dict(case.query or {})
            # One field per case, round robin over the body's leaves, then the query's (NUL only: a lone
            # surrogate cannot be put in a URL).
            targets = [("body", path, v) for path, v in _leaves(body)] + [("query", path, v) for path, v in
                                                                          _leaves(query)]
            if not targets:
                return
            where, path, original = targets[sent % len(targets)]
            if isinstance(original, str):
                hostile_value: Any = HOSTILE_TEXT[sent % len(HOSTILE_TEXT)]
                if where == "query" and "\x00" not in hostile_value:
                    hostile_value = "a\x00b"
            else:
                hostile_value = HOSTILE_INTS[sent % len(HOSTILE_INTS)]
            if where == "body":
                body = _plant(body, path, hostile_value)
            else:
                query = _plant(query, path, hostile_value)
            planted_total += 1
            text, number = hostile_value, where + "." + ".".join(map(str, path))
            headers = {"Authorization": f"Bearer {key}", **({"content-type": "application/json"} if body else {})}
            response = client.request(case.method, case.formatted_path, params=query or None, headers=headers,
                                      content=json.dumps(body).encode() if body is not None else None)
            declared = case.operation.definition.raw.get("responses", {})
            status = response.status_code
            if (status >= 500 and status != 503) or str(status) not in declared:
                failures.append(f"{case.operation.label} ({text!r}, {number}): {status} {response.text[:300]}")

        hostile()
    print(f"hostile: {planted_total} values planted, {len(failures)} failures")
    assert planted_total > 0
    assert not failures, "\n\n".join(failures[:10])
