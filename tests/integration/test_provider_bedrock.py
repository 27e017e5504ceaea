"""The Bedrock adapter driving boto3 (Converse, ConverseStream) against a loopback bedrock-runtime server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from stratus.llm import errors as e
from stratus.llm.catalog import Deployment, Price
from stratus.llm.providers.bedrock_converse import BedrockProvider
from stratus.llm.types import ChatRequest, Message, ToolCall
from tests.support.upstreams import BedrockUpstream, Fault

TIMEOUT = 0.3
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore signs every request; the loopback server does not check the signature.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="module")
def upstream() -> Iterator[BedrockUpstream]:
    with BedrockUpstream(cached_tokens=2) as up:
        yield up


@pytest.fixture
def up(upstream: BedrockUpstream) -> BedrockUpstream:
    upstream.clear()
    return upstream


@pytest.fixture
def deployment(upstream: BedrockUpstream) -> Deployment:
    return Deployment(name="loop-bedrock", provider="bedrock", model="amazon.nova-test-v1:0", region="us-east-1",
                      price=Price(input=1, output=2),
                      base_url=upstream.base_url, timeout_s=TIMEOUT)


@pytest.fixture(scope="module")
def provider() -> BedrockProvider:
    return BedrockProvider()


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)],
                       **kw)


def test_complete_returns_text_usage_and_sends_the_translated_request(up, deployment, provider):
    done = provider.complete(ask("what is pgvector", max_tokens=50, temperature=0.2, seed=7, stop=["\n\n"]),
                             deployment, timeout=TIMEOUT)

    assert done.text == "Echo: what is pgvector"
    assert done.finish_reason == "stop" and done.provider == "bedrock" and done.model == "amazon.nova-test-v1:0"
    assert done.response_id  # the x-amzn-RequestId
    # 2 system + 3 user words in; 4 words out; the server reports 2 of the input tokens as cached.
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.cached_input_tokens) == (5, 4, 2)
    sent = up.requests[-1]
    assert sent.path == "/model/amazon.nova-test-v1%3A0/converse"
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256")
    assert sent.body["system"] == [{"text": "Be brief."}]
    assert sent.body["messages"] == [{"role": "user", "content": [{"text": "what is pgvector"}]}]
    assert sent.body["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.2, "stopSequences": ["\n\n"]}
    assert "seed" not in str(sent.body)  # Converse has no seed


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
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": WEATHER["function"]["parameters"]}
    wire = sent["messages"]
    assert wire[1] == {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": tc.id, "name": "get_weather", "input": {"city": "use get_weather for Paris"}}}]}
    assert wire[2] == {"role": "user", "content": [{"toolResult": {"toolUseId": tc.id,
                                                                   "content": [{"text": "sunny, 24 C"}]}}]}


def test_stream_yields_deltas_then_a_final_chunk_with_usage(up, deployment, provider):
    chunks = list(provider.stream(ask("stream this please"), deployment, timeout=TIMEOUT))

    assert "".join(c.text for c in chunks) == "Echo: stream this please"
    assert len([c for c in chunks if c.text]) == 4
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.usage is not None and final.usage.output_tokens == 4
    assert final.usage.cached_input_tokens == 2
    assert final.usage.input_tokens == 5  # Bedrock's uncached inputTokens plus the cache reads
    assert up.requests[-1].path.endswith("/converse-stream")


def test_stream_tool_call_fragments_assemble(up, deployment, provider):
    chunks = list(provider.stream(ask("call get_weather now", tools=[WEATHER]), deployment, timeout=TIMEOUT))
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas[0].id and deltas[0].name == "get_weather"
    assert json.loads("".join(d.arguments for d in deltas)) == {"city": "call get_weather now"}
    assert chunks[-1].finish_reason == "tool_calls"


def test_one_client_is_reused_across_calls(up, deployment, provider):
    from stratus.aws.bedrock import runtime_client

    provider.complete(ask("a"), deployment, timeout=TIMEOUT)
    first = runtime_client(region="us-east-1", endpoint_url=deployment.base_url, timeout=TIMEOUT)
    provider.complete(ask("b"), deployment, timeout=0.25)  # rounds up to the same 0.3 s client
    assert runtime_client(region="us-east-1", endpoint_url=deployment.base_url, timeout=0.25) is first


@pytest.mark.parametrize(("fault", "error", "status"), [
    (Fault.status(429, retry_after=1), e.RateLimited, 429),
    (Fault.status(500), e.ServerError, 500),
    (Fault.status(503), e.Overloaded, 503),
    (Fault.status(408), e.ProviderTimeout, 408),
    (Fault.status(424), e.ServerError, 500),
    (Fault.delay(2.0), e.ProviderTimeout, None),
    (Fault.reset(), e.ProviderUnavailable, None),
    (Fault.malformed(), e.MalformedResponse, 200),
    (Fault.context_length(), e.ContextLengthExceeded, 400),
    (Fault.auth(), e.AuthenticationFailed, 403),
], ids=["429", "500", "503", "408-model-timeout", "424-model-error", "timeout", "reset", "malformed",
        "context_length", "auth"])
def test_each_fault_is_a_typed_error_and_the_next_call_succeeds(up, deployment, provider, fault, error, status):
    up.inject(fault)
    with pytest.raises(error) as caught:
        provider.complete(ask("hello"), deployment, timeout=TIMEOUT)
    assert type(caught.value) is error
    assert caught.value.status == status and caught.value.deployment == "loop-bedrock"
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
    assert caught.value.deployment == "loop-bedrock"


@pytest.mark.parametrize(("code", "error"), [(429, e.RateLimited), (503, e.Overloaded), (500, e.ServerError),
                                           (424, e.ServerError)],
                         ids=["throttlingException", "serviceUnavailableException", "internalServerException",
                              "modelStreamErrorException"])
def test_exception_event_inside_the_stream_is_classified(up, deployment, provider, code, error):
    up.inject(Fault.stream_error(code, after_chunks=1))
    got = []
    with pytest.raises(error):
        for chunk in provider.stream(ask("one two three"), deployment, timeout=TIMEOUT):
            got.append(chunk)
    assert "".join(c.text for c in got) == "Echo:"


def test_image_links_are_refused_naming_the_field(deployment, provider):
    request = ChatRequest(messages=[Message(role="user", content=[
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}])])
    with pytest.raises(e.InvalidRequest) as caught:
        provider.complete(request, deployment, timeout=TIMEOUT)
    assert caught.value.field == "messages[0].content[1].image_url"


def test_nothing_listening_is_provider_unavailable(deployment, provider):
    with BedrockUpstream() as gone:
        url = gone.base_url
    closed = deployment.model_copy(update={"base_url": url})
    with pytest.raises(e.ProviderUnavailable):
        provider.complete(ask("hello"), closed, timeout=TIMEOUT)
