"""The Lambda handler (Mangum) on API Gateway HTTP API v2 events from events/: the same app, the
request id shared by response and logs, and the OpenAI error shape through API Gateway."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.integration.gateway_support import tenant_with_key

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = "sk-stratus-REPLACE_WITH_A_KEY"


@pytest.fixture(scope="module")
def gateway(pg_url: str) -> Any:
    spec = importlib.util.spec_from_file_location("gateway_app", ROOT / "functions" / "gateway" / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def context() -> SimpleNamespace:
    return SimpleNamespace(function_name="gateway", memory_limit_in_mb=1024, aws_request_id="lambda-req-1",
                           invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:gateway")


def event(name: str, key: str) -> dict[str, Any]:
    return json.loads((ROOT / "events" / name).read_text().replace(PLACEHOLDER, key))


def test_a_chat_completion_event_returns_an_openai_completion(gateway: Any, context: Any, pg_url: str) -> None:
    _, key = tenant_with_key(pg_url, "lam")
    response = gateway.handler(event("gateway_chat.json", key), context)
    assert response["statusCode"] == 200, response["body"]
    assert response["headers"]["x-request-id"] == "evt-chat-1"
    body = json.loads(response["body"])
    assert body["object"] == "chat.completion" and body["model"] == "fast"
    assert body["choices"][0]["message"]["role"] == "assistant" and body["stratus"]["request_id"] == "evt-chat-1"


def test_a_model_id_with_a_slash_and_a_bad_key(gateway: Any, context: Any, pg_url: str) -> None:
    _, key = tenant_with_key(pg_url, "lam")
    ok = gateway.handler(event("gateway_models.json", key), context)
    assert ok["statusCode"] == 200 and json.loads(ok["body"])["id"] == "rag/fast"
    denied = gateway.handler(event("gateway_models.json", "sk-stratus-wrong"), context)
    assert denied["statusCode"] == 401 and json.loads(denied["body"])["error"]["code"] == "invalid_api_key"
    assert denied["headers"]["x-request-id"].startswith("req_")
