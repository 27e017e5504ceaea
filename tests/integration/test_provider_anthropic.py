"""The Anthropic adapter driving the official SDK against a loopback Messages API server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from stratus.llm import errors as e
from stratus.llm.catalog import Deployment, Price
from stratus.llm.providers.anthropic_messages import AnthropicProvider
from stratus.llm.types import ChatRequest, Message, ToolCall
from tests.support.upstreams import AnthropicUpstream, Fault

TIMEOUT = 0.3
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[AnthropicUpstream]:
    with AnthropicUpstream(cached_tokens=2) as up:
        yield up


@pytest.fixture
def up(upstream: AnthropicUpstream) -> AnthropicUpstream:
    upstream.clear()
    return upstream


@pytest.fixture
def deployment(upstream: AnthropicUpstream) -> Deployment:
    return Deployment(name="loop-anthropic", provider="anthropic", model="claude-test", price=Price(input=1, output=2),
                      base_url=upstream.base_url, api_key="sk-test", timeout_s=TIMEOUT)


@pytest.fixture(scope="module")
def provider() -> AnthropicProvider:
    return AnthropicProvider()


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)],
                       **kw)


def test_complete_returns_text_usage_and_sends_the_translated_request(up, deployment, provider):
    done = provider.complete(ask("what is pgvector", max_tokens=50, temperature=0.2, seed=7, stop=["\n\n"]),
                             deployment, timeout=TIMEOUT)

    assert done.text == "Echo: what is pgvector"
    assert done.finish_reason == "stop" and done.provider == "anthropic" and done.model == "claude-test"
    assert done.response_id and done.response_id.startswith("msg_")
    # 2 system + 3 user words in; 4 words out; the server reports 2 of the input tokens as cached.
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.cached_input_tokens) == (5, 4, 2)
    sent = up.requests[-1]
    assert sent.path == "/v1/messages" and "anthropic-version" in sent.headers
    assert sent.headers.get("x-api-key") == "sk-test" or sent.headers.get("authorization") == "Bearer sk-test"
    # The system turn moves to the `system` parameter; seed has no Messages equivalent and is not sent.
    assert sent.body["system"] == "Be brief."
    assert sent.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "what is pgvector"}]}]
    assert (sent.body["max_tokens"], sent.body["stop_sequences"]) == (50, ["\n\n"])
    assert not {"seed", "temperature"} & set(sent.body)  # the Messages API takes neither
    assert sent.headers["x-stainless-retry-count"] == "0"


def test_max_tokens_defaults_to_the_deployment_limit(up, deployment, provider):
    provider.complete(ask("hello"), deployment, timeout=TIMEOUT)
    assert up.requests[-1].body["max_tokens"] == deployment.max_output_tokens


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
    sent = up.requests[-1].body
    assert sent["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
    wire = sent["messages"]
    assert wire[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": tc.id, "name": "get_weather", "input": {"city": "use get_weather for Paris"}}]}
    assert wire[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tc.id,
                                                    "content": "sunny, 24 C"}]}


def test_stream_yields_deltas_then_a_final_chunk_with_usage(up, deployment, provider):
    chunks = list(provider.stream(ask("stream this please"), deployment, timeout=TIMEOUT))

    assert "".join(c.text for c in chunks) == "Echo: stream this please"
    assert len([c for c in chunks if c.text]) == 4
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.usage is not None and final.usage.output_tokens == 4
    assert final.usage.cached_input_tokens == 2
    assert final.usage.input_tokens == 5  # Anthropic's uncached input_tokens plus the cache reads


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
    (Fault.status(529), e.Overloaded, 529),
    (Fault.delay(2.0), e.ProviderTimeout, None),
    (Fault.reset(), e.ProviderUnavailable, None),
    (Fault.malformed(), e.MalformedResponse, 200),
    (Fault.context_length(), e.ContextLengthExceeded, 400),
    (Fault.auth(), e.AuthenticationFailed, 401),
], ids=["429", "500", "503", "529-overloaded", "timeout", "reset", "malformed", "context_length", "auth"])
def test_each_fault_is_a_typed_error_and_the_next_call_succeeds(up, deployment, provider, fault, error, status):
    up.inject(fault)
    with pytest.raises(error) as caught:
        provider.complete(ask("hello"), deployment, timeout=TIMEOUT)
    assert type(caught.value) is error
    assert caught.value.status == status and caught.value.deployment == "loop-anthropic"
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
    assert caught.value.deployment == "loop-anthropic"


def test_overloaded_error_event_inside_the_stream_is_classified_like_529(up, deployment, provider):
    up.inject(Fault.stream_error(529, after_chunks=1))
    got = []
    with pytest.raises(e.Overloaded) as caught:
        for chunk in provider.stream(ask("one two three"), deployment, timeout=TIMEOUT):
            got.append(chunk)
    assert "".join(c.text for c in got) == "Echo:"
    assert caught.value.status == 529


def test_missing_api_key_fails_with_the_field_named(deployment, provider):
    keyless = deployment.model_copy(update={"api_key": None})
    with pytest.raises(e.AuthenticationFailed) as caught:
        provider.complete(ask("hello"), keyless, timeout=TIMEOUT)
    assert caught.value.field == "api_key"


def test_nothing_listening_is_provider_unavailable(deployment, provider):
    with AnthropicUpstream() as gone:
        url = gone.base_url
    closed = deployment.model_copy(update={"base_url": url})
    with pytest.raises(e.ProviderUnavailable):
        provider.complete(ask("hello"), closed, timeout=TIMEOUT)


def test_consecutive_tool_results_merge_into_one_user_turn(up, deployment, provider):
    request = ChatRequest(tools=[WEATHER], messages=[
        Message(role="user", content="weather in Paris and Rome"),
        Message(role="assistant", content="Checking.", tool_calls=[
            ToolCall(id="t1", name="get_weather", arguments='{"city": "Paris"}'),
            ToolCall(id="t2", name="get_weather", arguments='{"city": "Rome"}')]),
        Message(role="tool", tool_call_id="t1", content="sunny"),
        Message(role="tool", tool_call_id="t2", content="rain"),
    ])
    assert provider.complete(request, deployment, timeout=TIMEOUT).text == "Echo: sunnyrain"
    wire = up.requests[-1].body["messages"]
    assert [m["role"] for m in wire] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in wire[2]["content"]] == ["t1", "t2"]
