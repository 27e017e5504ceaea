"""The OpenAI surface through the official `openai` SDK, over HTTP against the app served by uvicorn:
completions (plain, content parts, tools), streaming (usage chunk, [DONE], an error after the first
byte), embeddings, models, and each error the SDK must raise as its typed exception."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest

from stratus.config import Settings, load_settings
from stratus.db.connection import connect
from stratus.gateway.traces import get_trace
from stratus_tools.local.server import GatewayServer
from tests.integration.gateway_support import fresh_rate_window, loop_catalog, tenant_with_key
from tests.support.upstreams import Fault, OpenAIUpstream

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def settings(pg_url: str, upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    path = loop_catalog(tmp_path_factory, upstream.base_url, timeout_s=2)
    return load_settings(database_url=pg_url, models_file=path, openai_api_key="sk-loop", provider_mode="hosted",
                         cache_enabled=False, retry_attempts=0, max_body_bytes=16 * 1024, max_messages=8,
                         max_output_tokens=1000)


@pytest.fixture
def tenant(pg_url: str) -> tuple[str, str]:
    return tenant_with_key(pg_url, "gw")


def sdk(server: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _wait_for(pg_url: str, read: Callable[[Any], Any], ready: Callable[[Any], bool], failure: str) -> Any:
    """read(conn) until ready(what it read), for ~2 s: traces and settlement are written after the response."""
    conn = connect(pg_url)
    try:
        for _ in range(100):
            found = read(conn)
            if ready(found):
                return found
            time.sleep(0.02)
    finally:
        conn.close()
    raise AssertionError(failure)


def trace(pg_url: str, tenant_id: str, request_id: str) -> dict[str, Any]:
    """The request's trace (written after the response: wait briefly for the background task)."""
    return _wait_for(pg_url, lambda conn: get_trace(conn, tenant_id, request_id), lambda row: row is not None,
                     f"no trace for {request_id}")


# --- completions -------------------------------------------------------------------------------------
def test_a_plain_completion_passes_the_messages_through_and_reports_usage_cost_and_request_id(
        server: GatewayServer, up: OpenAIUpstream, tenant: tuple[str, str], pg_url: str) -> None:
    tenant_id, key = tenant
    raw = sdk(server, key).chat.completions.with_raw_response.create(
        model="fast", extra_headers={"x-request-id": "my-req-1"},
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": " there"}]}])
    completion = raw.parse()

    assert raw.headers["x-request-id"] == "my-req-1"
    assert raw.headers["x-ratelimit-limit-requests"] and raw.headers["x-ratelimit-remaining-tokens"]
    assert completion.model == "fast" and completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 3 and completion.usage.prompt_tokens > 0
    # The caller's messages reach the provider unchanged: no system message of ours is added.
    sent = up.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user"] and sent[0]["content"] == "Be brief."
    extra = completion.model_extra
    assert extra["citations"] == []
    assert extra["stratus"]["request_id"] == "my-req-1" and extra["stratus"]["deployment"] == "loop-openai"
    assert extra["stratus"]["prompt"]["name"] == "passthrough"
    expected = (completion.usage.prompt_tokens * 2.0 + completion.usage.completion_tokens * 8.0) / 1e6
    assert extra["stratus"]["cost_usd"] == pytest.approx(expected)
    row = trace(pg_url, tenant_id, "my-req-1")
    assert row["status"] == "ok" and row["deployment"] == "loop-openai" and row["output_tokens"] == 3
    assert row["route"] == "/v1/chat/completions" and "admit" in row["timings_ms"]


def test_tools_pass_through_and_tool_calls_come_back(server: GatewayServer, up: OpenAIUpstream,
                                                      tenant: tuple[str, str]) -> None:
    client = sdk(server, tenant[1])
    completion = client.chat.completions.create(model="fast", messages=ask("call get_weather for Oslo"),
                                                tools=[WEATHER_TOOL], tool_choice="auto", max_completion_tokens=50,
                                                seed=7, stop=["\n\n"], user="u-1")
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["city"]
    sent = up.requests[-1].body
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["seed"] == 7
    # The tool's answer goes back as a tool message, with the assistant's call echoed.
    follow = client.chat.completions.create(model="fast", tools=[WEATHER_TOOL], messages=[
        *ask("call get_weather for Oslo"), choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert follow.choices[0].finish_reason == "stop" and "sunny" in follow.choices[0].message.content


# --- streaming ---------------------------------------------------------------------------------------
def test_a_stream_sends_role_then_text_then_finish_with_citations_then_usage_then_done(
        server: GatewayServer, up: OpenAIUpstream, tenant: tuple[str, str], pg_url: str) -> None:
    tenant_id, key = tenant
    stream = sdk(server, key).chat.completions.create(model="fast", messages=ask("one two three four"),
                                                      stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: one two three four"
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][0]
    assert final.choices[0].finish_reason == "stop" and final.model_extra["citations"] == []
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 5
    assert len({c.id for c in chunks}) == 1
    row = trace(pg_url, tenant_id, final.model_extra["stratus"]["request_id"])
    assert row["streamed"] and row["status"] == "ok" and row["output_tokens"] == 5


def test_the_raw_stream_ends_with_done(server: GatewayServer, up: OpenAIUpstream, tenant: tuple[str, str]) -> None:
    body = {"model": "fast", "messages": ask("hi"), "stream": True}
    with httpx2.stream("POST", f"{server.url}/v1/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {tenant[1]}"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)


def _usage(pg_url: str, tenant_id: str) -> dict[str, Any]:
    """The tenant's usage once nothing is in flight (settlement runs after the response)."""
    from stratus.gateway.tenancy import usage

    return _wait_for(pg_url, lambda conn: usage(conn, tenant_id), lambda found: not found["in_flight"],
                     f"tenant {tenant_id} still has requests in flight")


def test_a_break_after_the_first_byte_is_an_error_event_and_never_a_silent_end(
        server: GatewayServer, up: OpenAIUpstream, tenant: tuple[str, str], pg_url: str) -> None:
    up.inject(Fault.cut_stream(after_chunks=2))
    stream = sdk(server, tenant[1]).chat.completions.create(model="fast", messages=ask("a b c d e f g"), stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert received, "the failure came after the first byte"
    assert "stream" in str(caught.value.message).lower()
    # The provider was paid from the first byte on: a cut stream settles at its reservation, not at zero.
    usage = _usage(pg_url, tenant[0])
    assert usage["spent_usd"] > 0 and usage["reserved_usd"] == 0
    row = trace(pg_url, tenant[0], stream.response.headers["x-request-id"])
    assert row["status"] == "error" and row["error_code"] == "stream_interrupted" and row["streamed"]
    up.inject(Fault.cut_stream(after_chunks=2))
    with httpx2.stream("POST", f"{server.url}/v1/chat/completions", json={
            "model": "fast", "messages": ask("a b c d e f g"), "stream": True},
            headers={"Authorization": f"Bearer {tenant[1]}"}) as r:
        events = [line for line in r.iter_lines() if line]
    assert "[DONE]" not in events[-1] and json.loads(events[-1][6:])["error"]["type"] == "api_error"


def test_a_failure_before_the_first_byte_is_a_plain_json_error(server: GatewayServer, up: OpenAIUpstream,
                                                               tenant: tuple[str, str]) -> None:
    up.inject(Fault.status(500))
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(server, tenant[1]).chat.completions.create(model="fast", messages=ask("hi"), stream=True)
    assert caught.value.status_code == 502


# --- errors ------------------------------------------------------------------------------------------
def test_unknown_and_wrong_keys_get_the_same_401(server: GatewayServer, tenant: tuple[str, str]) -> None:
    messages = []
    for key in ("sk-stratus-abcdefghijkl_" + "x" * 43, "not-a-key", tenant[1][:-2] + "zz"):
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk(server, key).chat.completions.create(model="fast", messages=ask("hi"))
        messages.append(caught.value.message)
        assert caught.value.response.headers["x-request-id"].startswith("req_")
    assert len(set(messages)) == 1


def test_a_key_without_the_inference_scope_gets_403(server: GatewayServer, pg_url: str) -> None:
    _, key = tenant_with_key(pg_url, "gw", scopes=("documents",))
    with pytest.raises(openai.PermissionDeniedError):
        sdk(server, key).models.list()


def test_an_unknown_model_is_404_model_not_found_and_costs_nothing(server: GatewayServer, up: OpenAIUpstream,
                                                                   tenant: tuple[str, str]) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(server, tenant[1]).chat.completions.create(model="gpt-9", messages=ask("hi"))
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert up.requests == []


def test_a_body_over_max_body_bytes_is_413_naming_the_limit(server: GatewayServer, tenant: tuple[str, str]) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(server, tenant[1]).chat.completions.create(model="fast", messages=ask("x" * 20_000))
    assert caught.value.status_code == 413 and "max_body_bytes" in caught.value.message
    # A body that lies about its length is cut off at the limit too.
    r = httpx2.post(f"{server.url}/v1/chat/completions", content=(b"x" * 20_000 for _ in range(1)),
                    headers={"Authorization": f"Bearer {tenant[1]}", "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["param"] == "max_body_bytes"


def test_a_body_that_fails_the_schema_is_400_naming_the_field(server: GatewayServer, tenant: tuple[str, str],
                                                              settings: Settings, up: OpenAIUpstream) -> None:
    # OpenAI answers a schema mismatch with 400 (BadRequestError), never 422; the code says which kind.
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server, tenant[1]).chat.completions.create(model="fast", messages=[{"role": "wizard", "content": "hi"}])
    assert caught.value.param == "messages.0.role" and caught.value.code == "invalid_value"
    # A name that is no OpenAI parameter reaches an OpenAI-compatible upstream (the SDK's extra_body)...
    sdk(server, tenant[1]).chat.completions.create(model="fast", messages=ask("hi"), extra_body={"tempreature": 1})
    assert up.requests[-1].body["tempreature"] == 1
    # ... unless forwarding them is off: then it is refused as unknown, as OpenAI refuses it.
    from starlette.testclient import TestClient

    from stratus.gateway.app import create_app

    strict = settings.model_copy(update={"forward_unknown_parameters": False})
    with TestClient(create_app(strict)) as client:
        r = client.post("/v1/chat/completions", json={"model": "fast", "messages": ask("hi"), "tempreature": 1},
                        headers={"Authorization": f"Bearer {tenant[1]}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "tempreature" and r.json()["error"]["code"] == "unknown_parameter"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server, tenant[1]).chat.completions.create(model="fast", messages=ask("hi"), temperature="hot")  # type: ignore[arg-type]
    assert caught.value.param == "temperature" and caught.value.code == "invalid_type"
    r = httpx2.post(f"{server.url}/v1/chat/completions", json={"model": "fast"},
                    headers={"Authorization": f"Bearer {tenant[1]}"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_required_parameter"


@pytest.mark.parametrize(("extra", "param"), [
    ({"messages": ask("hi") * 9}, "messages"),
    ({"max_tokens": 5000}, "max_tokens"),
    ({"max_completion_tokens": 5000, "max_tokens": 10}, "max_completion_tokens"),
    ({"n": 2, "stream": True}, "n"),
    ({"logprobs": True, "stream": True}, "logprobs"),
])
def test_semantic_limits_are_400_naming_the_limit(server: GatewayServer, up: OpenAIUpstream,
                                                  tenant: tuple[str, str], extra: dict[str, Any], param: str) -> None:
    args = {"model": "fast", "messages": ask("hi"), **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server, tenant[1]).chat.completions.create(**args)
    assert caught.value.param == param
    assert up.requests == []


def test_over_the_rate_limit_is_429_with_retry_after_and_ratelimit_headers(server: GatewayServer, pg_url: str,
                                                                           up: OpenAIUpstream) -> None:
    _, key = tenant_with_key(pg_url, "gw", requests_per_minute=2)
    client = sdk(server, key)
    fresh_rate_window()
    for _ in range(2):
        client.chat.completions.create(model="fast", messages=ask("hi"))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="fast", messages=ask("hi"))
    headers = caught.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert caught.value.code == "rate_limit_exceeded" and len(up.requests) == 2


def test_an_exhausted_budget_is_insufficient_quota_and_calls_nothing(server: GatewayServer, pg_url: str,
                                                                     up: OpenAIUpstream) -> None:
    from stratus.gateway.tenancy import set_limits

    tenant_id, key = tenant_with_key(pg_url, "gw")
    conn = connect(pg_url)
    try:
        # max_tokens 500 at $8/M is $0.004 worst case: a $0.001 budget cannot hold one request.
        set_limits(conn, tenant_id, budget_usd=0.001, budget_period="day")
    finally:
        conn.close()
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(server, key).chat.completions.create(model="fast", messages=ask("hi"))
    assert caught.value.code == "insufficient_quota" and up.requests == []
    assert caught.value.response.headers["x-should-retry"] == "false"  # the SDK does not retry it


def test_every_authenticated_request_is_traced_not_only_completions(server: GatewayServer, pg_url: str,
                                                                    tenant: tuple[str, str]) -> None:
    r = httpx2.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {tenant[1]}"})
    assert r.status_code == 200
    row = trace(pg_url, tenant[0], r.headers["x-request-id"])
    assert row["route"] == "/v1/models" and row["status_code"] == 200 and row["status"] == "ok"
    missing = httpx2.get(f"{server.url}/v1/models/no-such-model", headers={"Authorization": f"Bearer {tenant[1]}"})
    assert missing.status_code == 404
    assert trace(pg_url, tenant[0], missing.headers["x-request-id"])["status_code"] == 404


def test_a_reused_request_id_is_echoed_and_does_not_collide(server: GatewayServer, up: OpenAIUpstream,
                                                           tenant: tuple[str, str]) -> None:
    client = sdk(server, tenant[1])
    for _ in range(2):  # a client retrying with its own id gets an answer each time, not a 400
        raw = client.chat.completions.with_raw_response.create(
            model="fast", messages=ask("hi"), extra_headers={"x-request-id": "client-retry-7"})
        assert raw.headers["x-request-id"] == "client-retry-7" and raw.parse().choices[0].message.content


def test_unknown_routes_are_404_in_the_openai_shape_and_health_needs_no_key(server: GatewayServer) -> None:
    r = httpx2.get(f"{server.url}/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url" and r.headers["x-request-id"]
    assert httpx2.get(f"{server.url}/health").json() == {"status": "ok", "database": "ok"}
    assert "/v1/chat/completions" in httpx2.get(f"{server.url}/openapi.json").json()["paths"]


# --- embeddings and models ---------------------------------------------------------------------------
def test_embeddings_float_and_base64_with_token_usage(server: GatewayServer, tenant: tuple[str, str]) -> None:
    client = sdk(server, tenant[1])
    out = client.embeddings.create(model="all-MiniLM-L6-v2", input=["refund policy", "shipping times"],
                                   encoding_format="float")
    assert [d.index for d in out.data] == [0, 1] and len(out.data[0].embedding) == 384
    assert out.usage.prompt_tokens == out.usage.total_tokens >= 4
    encoded = client.embeddings.create(model="all-MiniLM-L6-v2", input="refund policy")  # the SDK asks base64
    assert encoded.data[0].embedding == pytest.approx(out.data[0].embedding, abs=1e-6)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[[1, 2, 3]])
    assert caught.value.param == "input"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="fast", input="x")


def test_models_lists_aliases_rag_assistants_and_the_embedding_model(server: GatewayServer,
                                                                     tenant: tuple[str, str]) -> None:
    client = sdk(server, tenant[1])
    ids = [m.id for m in client.models.list()]
    assert {"fast", "rag/fast", "loop-openai", "all-MiniLM-L6-v2"} <= set(ids)
    assert client.models.retrieve("rag/fast").id == "rag/fast"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("rag/nope")
