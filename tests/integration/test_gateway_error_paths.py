"""One provider failure, four ways to ask: plain chat and streamed chat and streamed RAG (in-process) and
non-streamed RAG (the query workflow: Step Functions in moto calling the local Generate task, whose
exception crosses the Lambda boundary as its class name and message). Each gives the client the same
status, code and retry-after, through the one error table (stratus.gateway.errors)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stratus.config import load_settings
from stratus_tools.local.stack import EnvOverlay, LocalStack
from tests.integration.gateway_support import auth, loop_catalog, tenant_with_key
from tests.support.upstreams import Fault, OpenAIUpstream

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / ".stratus" / "test-gateway-error-paths"
DEPLOYMENT = "loop-error-paths"  # its own name: the process-wide circuit breaker counts per deployment
DEADLINE_S = 6.0  # generation_deadline_s and stream_deadline_s: what a slow provider runs into

# (model, stream): plain, streamed, RAG through the workflow, streamed RAG (in-process)
PATHS = {"plain": ("fast", False), "streamed": ("fast", True), "rag": ("rag/fast", False),
         "rag-streamed": ("rag/fast", True)}


@pytest.fixture(scope="module")
def stack(pg_url: str, upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    path = loop_catalog(tmp_path_factory, upstream.base_url, timeout_s=20, deployment=DEPLOYMENT)
    # The gateway and the workflow's tasks run in this process and read the same environment.
    env = EnvOverlay()
    env.set({"STRATUS_MODELS_FILE": path, "STRATUS_OPENAI_API_KEY": "sk-loop", "STRATUS_PROVIDER_MODE": "hosted",
             "STRATUS_CACHE_ENABLED": "false", "STRATUS_RETRY_ATTEMPTS": "0",
             "STRATUS_GENERATION_DEADLINE_S": str(DEADLINE_S), "STRATUS_STREAM_DEADLINE_S": str(DEADLINE_S),
             "STRATUS_EVAL_SAMPLE_RATE": "0"})
    try:
        with LocalStack(load_settings(data_dir=DATA_DIR), start_pollers=False) as running:
            yield running
    finally:
        env.restore()


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> Iterator[TestClient]:
    from stratus.gateway.app import create_app

    with TestClient(create_app()) as c:
        yield c


@pytest.fixture(scope="module")
def key(pg_url: str) -> str:
    return tenant_with_key(pg_url, "errpaths")[1]


def ask(client: TestClient, key: str, path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """(status, headers, body) of one request; a stream's failure before its first byte is a JSON error."""
    from stratus.config import get_settings
    from stratus.llm.router import default_breaker

    # Each request meets the fault on its own: no earlier failure may have opened the deployment's breaker.
    default_breaker(get_settings()).success(DEPLOYMENT)
    model, stream = PATHS[path]
    body = {"model": model, "messages": [{"role": "user", "content": "How are API keys rotated?"}],
            "stream": stream, "max_tokens": 32}
    with client.stream("POST", "/v1/chat/completions", json=body, headers=auth(key)) as r:
        r.read()
        text = r.text
    if r.status_code == 200 and stream:
        return 200, dict(r.headers), {"events": text}
    return r.status_code, dict(r.headers), json.loads(text)


def test_every_path_answers_without_a_fault(client: TestClient, up: OpenAIUpstream, key: str) -> None:
    # The harness itself (and a warm-up: the first RAG request loads the retrieval models).
    for path in PATHS:
        status, _, body = ask(client, key, path)
        assert status == 200, (path, body)
    assert len(up.requests) == len(PATHS)


@pytest.mark.parametrize(("fault", "status", "codes", "retry_after"), [
    # every deployment rate limited: 429 with the provider's retry-after (the SDKs raise RateLimitError)
    (Fault.status(429, retry_after=1), 429, {"provider_rate_limited"}, "1"),
    # the provider refuses the request itself: 400 (before: 502 on RAG)
    (Fault.status(400), 400, {"invalid_request"}, None),
    # a provider slower than the request's deadline: 504
    (Fault.delay(DEADLINE_S + 4), 504, {"timeout", "deadline_exceeded"}, None),
    # the provider refused the gateway's credentials: a fixed 502 the SDKs do not retry
    (Fault.auth(), 502, {"authentication_failed"}, None),
], ids=["rate-limited", "invalid-request", "deadline", "provider-auth"])
def test_plain_streamed_and_rag_requests_fail_alike(client: TestClient, up: OpenAIUpstream, key: str, fault: Fault,
                                                    status: int, codes: set[str], retry_after: str | None) -> None:
    seen = {}
    kind = {400: "invalid_request_error", 429: "requests"}.get(status, "api_error")
    for path in PATHS:
        up.inject(fault)
        got, headers, body = ask(client, key, path)
        error = body.get("error") or {}
        seen[path] = (got, error.get("code"), headers.get("retry-after"))
        assert set(error) == {"message", "type", "param", "code"}, (path, body)
        assert "[stratus" not in error["message"]  # the wire trailer never reaches the client
        assert error["type"] == kind, (path, error)
    assert all(s == status and c in codes and r == retry_after for s, c, r in seen.values()), seen
