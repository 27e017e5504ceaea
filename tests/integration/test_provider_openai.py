"""The OpenAI adapter driving the official SDK against a loopback Chat Completions server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from stratus.llm import errors as e
from stratus.llm.catalog import Deployment, Price
from stratus.llm.providers.openai_chat import OpenAIProvider
from stratus.llm.types import ChatRequest, Message, ToolCall
from tests.support.upstreams import Fault, OpenAIUpstream

TIMEOUT = 0.3
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream(cached_tokens=2) as up:
        yield up


@pytest.fixture
def up(upstream: OpenAIUpstream) -> OpenAIUpstream:
    upstream.clear()
    return upstream


@pytest.fixture
def deployment(upstream: OpenAIUpstream) -> Deployment:
    return Deployment(name="loop-openai", provider="openai", model="gpt-test", price=Price(input=1, output=2),
                      base_url=upstream.base_url, api_key="sk-test", timeout_s=TIMEOUT)


@pytest.fixture(scope="module")
def provider() -> OpenAIProvider:
    return OpenAIProvider()


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)],
                       **kw)


def test_complete_returns_text_usage_and_sends_the_translated_request(up, deployment, provider):
    done = provider.complete(ask("what is pgvector", max_tokens=50, temperature=0.2, seed=7, stop=["\n\n"]),
                             deployment, timeout=TIMEOUT)

    assert done.text == "Echo: what is pgvector"
    assert done.finish_reason == "stop" and done.provider == "openai" and done.model == "gpt-test"
    assert done.response_id and done.response_id.startswith("chatcmpl-")
    # 2 system + 3 user words in; 4 words out; the server reports 2 of the input tokens as cached.
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.cached_input_tokens) == (5, 4, 2)
    sent = up.requests[-1]
    assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (sent.body["max_completion_tokens"], sent.body["temperature"], sent.body["seed"], sent.body["stop"]) == (
        50, 0.2, 7, ["\n\n"])
    assert sent.headers["x-stainless-retry-count"] == "0"


def test_max_tokens_cuts_the_answer_with_finish_reason_length(up, deployment, provider):
    done = provider.complete(ask("one two three four five", max_tokens=2), deployment, timeout=TIMEOUT)
    assert (done.text, done.finish_reason, done.usage.output_tokens) == ("Echo: one", "length", 2)


def test_tool_call_and_round_trip(up, deployment, provider):
    call = provider.complete(ask("use get_weather for Paris", tools=[WEATHER], tool_choice="auto"), deployment,
                             timeout=TIMEOUT)
    assert call.finish_reason == "tool_calls" and call.text == ""
    [tc] = call.tool_calls
    assert tc.name == "get_weather" and json.loads(tc.arguments) == {"city": "use get_weather for Paris"}

    follow = ChatRequest(tools=[WEATHER], messages=[
        Message(role="user", content="use get_weather for Paris"),
        Message(role="assistant", tool_calls=[ToolCall(id=tc.id, name=tc.name, arguments=tc.arguments)]),
        Message(role="tool", tool_call_id=tc.id, content="sunny, 24 C"),
    ])
    answer = provider.complete(follow, deployment, timeout=TIMEOUT)
    assert answer.text == "Echo: sunny, 24 C" and answer.finish_reason == "stop"
    wire = up.requests[-1].body["messages"]
    assert wire[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": tc.arguments}
    assert wire[2] == {"role": "tool", "content": "sunny, 24 C", "tool_call_id": tc.id}


def test_stream_yields_deltas_then_a_final_chunk_with_usage(up, deployment, provider):
    chunks = list(provider.stream(ask("stream this please"), deployment, timeout=TIMEOUT))

    assert "".join(c.text for c in chunks) == "Echo: stream this please"
    assert len([c for c in chunks if c.text]) == 4
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.usage is not None and final.usage.output_tokens == 4
    assert final.usage.cached_input_tokens == 2
    assert up.requests[-1].body["stream_options"] == {"include_usage": True}


def test_stream_tool_call_fragments_assemble(up, deployment, provider):
    chunks = list(provider.stream(ask("call get_weather now", tools=[WEATHER]), deployment, timeout=TIMEOUT))
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas[0].id and deltas[0].name == "get_weather"
    assert json.loads("".join(d.arguments for d in deltas)) == {"city": "call get_weather now"}
    assert chunks[-1].finish_reason == "tool_calls"


def test_one_client_is_reused_across_calls(up, deployment, provider):
    provider.complete(ask("a"), deployment, timeout=TIMEOUT)
    provider.complete(ask("b"), deployment, timeout=TIMEOUT)
    assert len([k for k in provider._clients if k[0] == deployment.base_url]) == 1


@pytest.mark.parametrize(("fault", "error", "status"), [
    (Fault.status(429, retry_after=1), e.RateLimited, 429),
    (Fault.status(500), e.ServerError, 500),
    (Fault.status(503), e.Overloaded, 503),
    (Fault.delay(2.0), e.ProviderTimeout, None),
    (Fault.reset(), e.ProviderUnavailable, None),
    (Fault.malformed(), e.MalformedResponse, 200),
    (Fault.context_length(), e.ContextLengthExceeded, 400),
    (Fault.auth(), e.AuthenticationFailed, 401),
], ids=["429", "500", "503", "timeout", "reset", "malformed", "context_length", "auth"])
def test_each_fault_is_a_typed_error_and_the_next_call_succeeds(up, deployment, provider, fault, error, status):
    up.inject(fault)
    with pytest.raises(error) as caught:
        provider.complete(ask("hello"), deployment, timeout=TIMEOUT)
    assert type(caught.value) is error
    assert caught.value.status == status and caught.value.deployment == "loop-openai"
    if status == 429:
        assert caught.value.retry_after == 1.0
    assert provider.complete(ask("hello"), deployment, timeout=TIMEOUT).text == "Echo: hello"


def test_fractional_retry_after_comes_from_retry_after_ms(up, deployment, provider):
    up.inject(Fault.status(429, retry_after=0.25))
    with pytest.raises(e.RateLimited) as caught:
        provider.complete(ask("hello"), deployment, timeout=TIMEOUT)
    assert caught.value.retry_after == 0.25


def test_stream_faults_before_the_first_byte_are_classified(up, deployment, provider):
    up.inject(Fault.status(429, retry_after=2))
    with pytest.raises(e.RateLimited) as caught:
        list(provider.stream(ask("hello"), deployment, timeout=TIMEOUT))
    assert caught.value.retry_after == 2.0


def test_cut_stream_yields_what_arrived_then_raises_stream_interrupted(up, deployment, provider):
    up.inject(Fault.cut_stream(after_chunks=2))
    got = []
    with pytest.raises(e.StreamInterrupted) as caught:
        for chunk in provider.stream(ask("one two three four"), deployment, timeout=TIMEOUT):
            got.append(chunk)
    assert "".join(c.text for c in got) == "Echo: one"
    assert all(c.finish_reason is None and c.usage is None for c in got)  # nothing billable was reported
    assert caught.value.deployment == "loop-openai"


def test_error_object_inside_the_stream_is_classified(up, deployment, provider):
    up.inject(Fault.stream_error(500, after_chunks=1))
    got = []
    with pytest.raises(e.ServerError):
        for chunk in provider.stream(ask("one two three"), deployment, timeout=TIMEOUT):
            got.append(chunk)
    assert "".join(c.text for c in got) == "Echo:"


def test_missing_api_key_fails_with_the_field_named(deployment, provider):
    keyless = deployment.model_copy(update={"api_key": None})
    with pytest.raises(e.AuthenticationFailed) as caught:
        provider.complete(ask("hello"), keyless, timeout=TIMEOUT)
    assert caught.value.field == "api_key"


def test_nothing_listening_is_provider_unavailable(deployment, provider):
    with OpenAIUpstream() as gone:
        url = gone.base_url
    closed = deployment.model_copy(update={"base_url": url})
    with pytest.raises(e.ProviderUnavailable):
        provider.complete(ask("hello"), closed, timeout=TIMEOUT)
