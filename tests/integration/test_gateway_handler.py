"""The gateway function's app (functions/gateway/app.py) as the Lambda Web Adapter calls it: an HTTP
request carrying the invocation's Lambda context in `x-amzn-lambda-context`. The request id is shared by
the response and the logs, the invocation's deadline bounds the answer, its trace id reaches the X-Ray
SDK's variable, and the OpenAI error shape is kept. (The whole path, adapter and stage included, runs in
tests/lambda_contract.)"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from stratus.lambda_web import TRACE_VARIABLE
from tests.conftest import load_function_app
from tests.integration.gateway_support import tenant_with_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gateway(pg_url: str) -> Any:
    return load_function_app("gateway")


def _lambda_context(deadline_s: float = 30, trace: str | None = None) -> str:
    deadline_ms = int((time.time() + deadline_s) * 1000)
    return json.dumps({"request_id": f"lambda-{uuid.uuid4().hex[:8]}", "deadline": deadline_ms,
                       "invoked_function_arn": "arn:aws:lambda:us-east-1:123456789012:function:gateway",
                       "xray_trace_id": trace, "env_config": {"function_name": "gateway", "memory": 1769}})


def test_a_chat_completion_keeps_the_callers_request_id(gateway: Any, pg_url: str) -> None:
    _, key = tenant_with_key(pg_url, "lam")
    trace = "Root=1-67ce1a40-3f1c2b9e8d7a6c5b4e3f2a1b;Parent=53995c3f42cd8ad8;Sampled=1"
    with TestClient(gateway.app) as client:
        response = client.post("/v1/chat/completions", headers={
            "authorization": f"Bearer {key}", "x-request-id": "evt-chat-1",
            "x-amzn-lambda-context": _lambda_context(trace=trace)},
            json={"model": "fast", "messages": [{"role": "user", "content": "What is the refund window?"}],
                  "max_tokens": 64})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "evt-chat-1"
    body = response.json()
    assert body["object"] == "chat.completion" and body["stratus"]["request_id"] == "evt-chat-1"
    assert os.environ.get(TRACE_VARIABLE) == trace  # where the X-Ray SDK's Lambda context looks


def test_an_invocation_near_its_deadline_answers_with_a_typed_timeout(gateway: Any, pg_url: str) -> None:
    _, key = tenant_with_key(pg_url, "lam")
    # Less time than the gateway keeps for itself: the RAG workflow is not even started.
    with TestClient(gateway.app) as client:
        response = client.post("/v1/chat/completions", headers={
            "authorization": f"Bearer {key}", "x-amzn-lambda-context": _lambda_context(deadline_s=1.5)},
            json={"model": "rag/fast", "messages": [{"role": "user", "content": "How are keys rotated?"}]})
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "timeout"


def test_a_bad_key_is_the_openai_error_shape_with_a_fresh_request_id(gateway: Any) -> None:
    with TestClient(gateway.app) as client:
        denied = client.get("/v1/models/rag/fast", headers={"authorization": "Bearer sk-stratus-wrong",
                                                            "x-amzn-lambda-context": _lambda_context()})
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
    assert denied.headers["x-request-id"].startswith("req_")


def test_without_the_adapter_header_the_app_is_served_as_is(gateway: Any) -> None:
    with TestClient(gateway.app) as client:
        assert client.get("/health").json() == {"status": "ok", "database": "ok"}
