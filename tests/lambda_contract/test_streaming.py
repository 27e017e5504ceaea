"""Streamed answers through the deployed path: the openai SDK -> GatewayApi's stage (REST API, streaming
integration) -> the gateway's environment (Web Adapter -> run.sh -> uvicorn -> the app) -> a loopback
OpenAI server that streams one word at a time, as slowly as a test asks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import psycopg
import pytest
from openai import OpenAI

from tests.integration.gateway_support import tenant_with_key
from tests.lambda_contract.api_gateway import RestApiStage
from tests.lambda_contract.process import FunctionProcess
from tests.support.upstreams import OpenAIUpstream

# Several sentences, generated over a few seconds (the output rails hold back only the word that ends a
# model chunk, so the client sees the answer word by word while the rest is generated).
SENTENCES = (
    "The first sentence arrives early. The second follows after a while. The third takes its time too. "
    "The fourth is nearly the last. The fifth ends it."
)
# Thirty short sentences: every sentence is a write on each hop, and a write is how each hop learns that the
# one after it has gone (a closed socket fails the next write, not the one before).
MANY = " ".join(f"Sentence number {i}." for i in range(1, 31))


@pytest.fixture
def up(upstream: OpenAIUpstream) -> Iterator[OpenAIUpstream]:
    upstream.clear()
    yield upstream
    upstream.chunk_interval_s = 0.0


@pytest.fixture
def client(contract_stack: Any, api: RestApiStage) -> Iterator[tuple[str, OpenAI]]:
    tenant, key = tenant_with_key(contract_stack.database_url, "st")
    yield tenant, OpenAI(base_url=api.url + "v1", api_key=key, max_retries=0, timeout=60)
    api.invoke_timeout_s = None


def _arrivals(stream: Any, started: float) -> list[tuple[float, str]]:
    """(seconds since `started`, text) per chunk, as the client reads them."""
    return [(time.monotonic() - started, "".join(c.delta.content or "" for c in chunk.choices)) for chunk in stream]


def test_tokens_reach_the_client_while_the_provider_is_still_generating(
    up: OpenAIUpstream, client: Any, record_property: Any
) -> None:
    up.chunk_interval_s = 0.08  # 5 sentences, ~30 words: ~2.5 s of generation
    _, sdk = client
    # A warm environment (the rails and the provider SDK loaded): the figures are the stream's own.
    sdk.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Warm up."}])
    started = time.monotonic()
    stream = sdk.chat.completions.create(model="fast", stream=True, messages=[{"role": "user", "content": SENTENCES}])
    arrivals = _arrivals(stream, started)
    total = time.monotonic() - started
    text_arrivals = [t for t, text in arrivals if text]
    assert "".join(text for _, text in arrivals) == f"Echo: {SENTENCES}"
    first = text_arrivals[0]
    # The first sentence is on the client's screen long before the provider has finished the answer,
    # and the rest arrives over the generation's time, not in one piece at the end.
    assert first < total / 2, (first, total)
    assert text_arrivals[-1] - first > 1.0, text_arrivals
    record_property("first_text_chunk_s", round(first, 3))
    record_property("total_s", round(total, 3))
    print(
        f"\nstreaming through the tier: first text chunk {first:.3f} s, whole answer {total:.3f} s; "
        f"arrivals {[round(t, 2) for t in text_arrivals]}"
    )


def test_a_client_that_leaves_stops_the_generation_and_is_settled(
    up: OpenAIUpstream, client: Any, contract_stack: Any
) -> None:
    up.chunk_interval_s = 0.1  # ~90 words: 9 s of generation if nobody stops it
    tenant, sdk = client
    with sdk.chat.completions.with_streaming_response.create(
        model="fast", stream=True, messages=[{"role": "user", "content": MANY}]
    ) as response:
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if _text_of(line):
                break  # the first sentence is here; the client goes away
    left = time.monotonic()
    # The provider's stream is closed well before it would have ended by itself
    deadline = time.monotonic() + 10
    while up.streams_abandoned == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped_after = time.monotonic() - left
    assert (up.streams_abandoned, up.streams_completed) == (1, 0)
    print(f"\nthe provider's stream was closed {stopped_after:.2f} s after the client left")
    # and the request is traced as the client's doing, its reservation settled (billed at what it reserved)
    row = _settled_trace(contract_stack.database_url, tenant, request_id)
    assert (row["status_code"], row["error_code"], row["streamed"]) == (499, "client_closed", True), row
    assert row["cost_usd"] > 0


def test_the_stream_ends_before_the_invocation_does(
    up: OpenAIUpstream, client: Any, api: RestApiStage, functions: dict[str, FunctionProcess]
) -> None:
    up.chunk_interval_s = 0.25  # ~8 s of generation, in an invocation given 4 s
    api.invoke_timeout_s = 4
    _, sdk = client
    gateway = functions["GatewayFunction"]
    environment = gateway.proc
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in sdk.chat.completions.create(
            model="fast", stream=True, messages=[{"role": "user", "content": SENTENCES}]
        ):
            received.extend(c.delta.content or "" for c in chunk.choices)
    # The client got the gateway's typed error in the stream, not a cut connection ...
    assert "timeout" in json.dumps(caught.value.body), caught.value.body
    assert received and "".join(received) != f"Echo: {SENTENCES}"
    # ... and the environment was not killed: the gateway stopped itself before Lambda's deadline.
    assert gateway.proc is environment and environment is not None and environment.poll() is None


def test_the_stream_guard_works_on_the_streamed_path(up: OpenAIUpstream, client: Any) -> None:
    _, sdk = client
    text = "Send the receipt to ada.lovelace@example.com. Thanks a lot."
    chunks = list(sdk.chat.completions.create(model="fast", stream=True, messages=[{"role": "user", "content": text}]))
    # The provider saw a placeholder; the client gets its own address back
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"Echo: {text}"
    assert "ada.lovelace@example.com" not in json.dumps(up.requests[-1].body)
    system = (
        "You are the billing assistant of Acme Corp. Answer questions about invoices only, never discuss "
        "discounts, and escalate refund requests to a human agent."
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in sdk.chat.completions.create(
            model="fast",
            stream=True,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": system}],
        ):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "canary" in json.dumps(caught.value.body) or "canary" in str(caught.value)
    assert "escalate refund requests" not in "".join(received)  # the leak stopped before its second half


def test_errors_and_limits_keep_openais_classes_through_the_api(client: Any, api: RestApiStage) -> None:
    _, sdk = client
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=api.url + "v1", api_key="sk-stratus-wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_many:
        sdk.chat.completions.create(model="fast", max_tokens=10**6, messages=[{"role": "user", "content": "hi"}])
    assert too_many.value.body["param"] == "max_tokens"
    assert {m.id for m in sdk.models.list()} >= {"fast", "rag/fast"}


def test_the_anthropic_sdk_works_through_the_api(up: OpenAIUpstream, contract_stack: Any, api: RestApiStage) -> None:
    """POST /v1/messages on the deployed path: x-api-key auth, a message, a Messages event stream, an error."""
    _, key = tenant_with_key(contract_stack.database_url, "am")
    sdk = anthropic.Anthropic(base_url=api.url.rstrip("/"), api_key=key, max_retries=0, timeout=60)
    message = sdk.messages.create(model="fast", max_tokens=64, messages=[{"role": "user", "content": "Say hi."}])
    assert message.type == "message" and message.content[0].text  # type: ignore[union-attr]
    with sdk.messages.stream(model="fast", max_tokens=200, messages=[{"role": "user", "content": SENTENCES}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == f"Echo: {SENTENCES}" and final.stop_reason == "end_turn" and final.usage.output_tokens > 0
    with pytest.raises(anthropic.NotFoundError) as missing:
        sdk.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_the_responses_api_works_through_the_api(up: OpenAIUpstream, client: Any) -> None:
    """POST /v1/responses on the deployed path: a stored response continued by previous_response_id, a stream."""
    _, sdk = client
    first = sdk.responses.create(model="fast", input="The sky is blue.")
    second = sdk.responses.create(model="fast", input="Why?", previous_response_id=first.id)
    assert [m["content"] for m in up.requests[-1].body["messages"][-3:]] == [
        "The sky is blue.", "Echo: The sky is blue.", "Why?"]
    with sdk.responses.stream(model="fast", input=SENTENCES, previous_response_id=second.id) as stream:
        final = stream.get_final_response()
    assert final.output_text == f"Echo: {SENTENCES}" and final.status == "completed"
    assert sdk.responses.retrieve(final.id).output_text == final.output_text


def _text_of(line: str) -> str:
    if not line.startswith("data: {"):
        return ""
    return "".join(c.get("delta", {}).get("content") or "" for c in json.loads(line[6:]).get("choices", ()))


def _settled_trace(url: str, tenant: str, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT status_code, error_code, streamed, cost_usd FROM traces"
                " WHERE tenant_id = %s AND request_id = %s",
                [tenant, request_id],
            ).fetchone()
            open_reservations = conn.execute(
                "SELECT count(*) FROM budget_reservations WHERE tenant_id = %s", [tenant]
            ).fetchone()[0]
            if row is not None and open_reservations == 0:
                return {"status_code": row[0], "error_code": row[1], "streamed": row[2], "cost_usd": float(row[3])}
            assert time.monotonic() < deadline, (row, open_reservations)
            time.sleep(0.1)
