"""OpenTelemetry traces in a real OTLP backend: Arize Phoenix (its own virtualenv, `make phoenix`) is started
on a free port with an empty working folder; the gateway runs in-process on the local stack (moto Step
Functions calling the local task handlers, the offline provider) and exports its spans over OTLP/HTTP with
the batch processor stratus.telemetry configures; the spans are read back through Phoenix's REST API.

What must hold: one request is one trace, the caller's `traceparent` included (its trace id kept, the
gateway's request span its child, the trace id returned); every span's parent is in the trace; the query
workflow's tasks (guard x3, retrieve, generate) are in it, continued from the workflow input's
`trace_context`; the provider attempt carries the GenAI semantic-convention attributes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stratus import spans, telemetry
from stratus.config import load_settings
from stratus_tools.local.stack import LocalStack
from tests.integration.gateway_support import auth, tenant_with_key
from tests.support.local_stack import ingest_bytes, running_stack

ROOT = Path(__file__).resolve().parents[2]
PHOENIX_PYTHON = ROOT / ".venv-phoenix" / "bin" / "python"
START_TIMEOUT_S = 240  # an empty Phoenix migrates its SQLite database first: 30-60 s on 2 busy cores
DOCUMENT = b"# Key rotation\n\nAPI keys are rotated every 90 days by the security team.\n"
QUESTION = "How often are API keys rotated?"
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    return json.loads(_read(url))


def _read(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        body: bytes = response.read()
        return body


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Phoenix's base URL (it takes OTLP/HTTP at /v1/traces and answers its REST API on the same port)."""
    assert PHOENIX_PYTHON.exists(), f"{PHOENIX_PYTHON.relative_to(ROOT)} is missing: run `make phoenix`"
    work = tmp_path_factory.mktemp("phoenix")
    port = _free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "PHOENIX_WORKING_DIR": str(work),
           "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(_free_port()),
           "PHOENIX_TELEMETRY_ENABLED": "false", "NO_PROXY": "*"}
    log = (work / "phoenix.log").open("wb")
    process = subprocess.Popen([str(PHOENIX_PYTHON), "-m", "phoenix.server.main", "serve"], env=env, cwd=work,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, (work / "phoenix.log").read_text()[-3000:]
            try:
                _read(f"{url}/healthz")  # 200 once it serves
                break
            except OSError:
                assert time.monotonic() < deadline, (work / "phoenix.log").read_text()[-3000:]
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def exporting(phoenix: str) -> Iterator[Any]:
    """The spans of this module's requests go to Phoenix through the batch processor and OTLP/HTTP exporter
    that stratus.telemetry configures for OTEL_EXPORTER_OTLP_ENDPOINT."""
    settings = load_settings(otel_endpoint=phoenix, otel_service_name="stratus-test")
    endpoint = telemetry.traces_endpoint(settings)
    assert endpoint == f"{phoenix}/v1/traces"
    provider = telemetry.exporting_provider(settings, "gateway", endpoint)
    spans.use(provider)
    yield provider
    spans.use(None)
    provider.shutdown()


@pytest.fixture(scope="module")
def stack(pg_url: str) -> Iterator[LocalStack]:
    yield from running_stack("test-otel-backend")


@pytest.fixture(scope="module")
def client(stack: LocalStack, exporting: Any) -> Iterator[TestClient]:
    from stratus.gateway.app import create_app

    with TestClient(create_app()) as c:
        yield c


@pytest.fixture(scope="module")
def key(stack: LocalStack, pg_url: str) -> str:
    tenant, key = tenant_with_key(pg_url, "otel")
    ingest_bytes(tenant, "rotation.md", DOCUMENT)
    return key


def _trace(phoenix: str, trace_id: str, expect: set[str], wait_s: float = 30.0) -> list[dict[str, Any]]:
    """The trace's spans as Phoenix stored them, once every name in `expect` has arrived."""
    deadline = time.monotonic() + wait_s
    while True:
        found = _get(f"{phoenix}/v1/projects/default/spans?trace_id={trace_id}&limit=1000")["data"]
        if expect <= {s["name"] for s in found} or time.monotonic() > deadline:
            return list(found)
        time.sleep(0.5)


def test_a_rag_request_is_one_trace_under_the_callers_span(client: TestClient, key: str, phoenix: str,
                                                           exporting: Any) -> None:
    # Given a caller's W3C trace context, when it asks a RAG question (the query workflow: non-streamed RAG)
    r = client.post("/v1/chat/completions", headers={**auth(key), "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
                    json={"model": "rag/fast", "messages": [{"role": "user", "content": QUESTION}]})
    assert r.status_code == 200, r.text
    # Then the response names the caller's trace and the gateway's request span in it
    assert r.headers["x-trace-id"] == CALLER_TRACE
    _, trace_id, request_span_id, _ = r.headers["traceparent"].split("-")
    assert trace_id == CALLER_TRACE
    exporting.force_flush()
    expect = {"POST /v1/chat/completions", "admission", "workflow", "guard", "retrieve", "generate",
              "provider_attempt", "lexical", "dense", "fusion", "prompt", "rail_injection", "rail_pii"}
    found = _trace(phoenix, CALLER_TRACE, expect)
    names = {s["name"] for s in found}
    assert expect <= names, sorted(expect - names)
    by_id = {s["context"]["span_id"]: s for s in found}
    # one tree: the request span is the caller's span's child, every other span's parent is in the trace
    (root,) = [s for s in found if s["parent_id"] not in by_id]
    assert root["name"] == "POST /v1/chat/completions" and root["parent_id"] == CALLER_SPAN
    assert root["context"]["span_id"] == request_span_id
    assert _flat(root["attributes"])["http.route"] == "/v1/chat/completions"
    # the workflow's tasks are children of the gateway's workflow span (continued from its input)
    workflow = next(s for s in found if s["name"] == "workflow")
    tasks = [s for s in found if s["name"] in ("guard", "retrieve", "generate")]
    assert sorted(s["name"] for s in tasks) == ["generate", "guard", "guard", "guard", "retrieve"]
    assert {s["parent_id"] for s in tasks} == {workflow["context"]["span_id"]}
    # the provider attempt is under generate, with the GenAI attributes
    attempt = next(s for s in found if s["name"] == "provider_attempt")
    up = attempt["parent_id"]
    while by_id[up]["name"] != "generate":
        up = by_id[up]["parent_id"]
    attributes = _flat(attempt["attributes"])
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "offline"
    assert attributes["gen_ai.request.model"] and attributes["gen_ai.response.model"]
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    assert attributes["stratus.outcome"] == "ok"
    # ids, names and counts only: never the question's text
    assert QUESTION not in json.dumps(found) and "rotated" not in json.dumps([s["attributes"] for s in found])


def test_each_request_without_a_traceparent_is_a_trace_of_its_own(client: TestClient, key: str, phoenix: str,
                                                                  exporting: Any) -> None:
    ids = []
    for _ in range(2):
        r = client.post("/v1/chat/completions", headers=auth(key),
                        json={"model": "fast", "messages": [{"role": "user", "content": "Say hello."}]})
        assert r.status_code == 200, r.text
        ids.append(r.headers["x-trace-id"])
    assert ids[0] != ids[1]
    exporting.force_flush()
    for trace_id in ids:
        found = _trace(phoenix, trace_id, {"POST /v1/chat/completions", "provider_attempt"})
        roots = [s for s in found if s["parent_id"] is None]
        assert [s["name"] for s in roots] == ["POST /v1/chat/completions"], [s["name"] for s in found]
        assert {"admission", "provider_attempt", "rail_injection"} <= {s["name"] for s in found}


def _flat(attributes: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Phoenix may return dotted attribute names nested ({"gen_ai": {"usage": ...}}): flattened back."""
    out: dict[str, Any] = {}
    for k, v in attributes.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{name}."))
        else:
            out[name] = v
    return out
