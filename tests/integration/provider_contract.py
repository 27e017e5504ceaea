"""What every provider adapter must do against its loopback wire server.

A provider's test module subclasses `ProviderContract`, naming its wire server, its adapter, the
deployment fields that differ and the faults its API can return; the tests here then run for it, and
the module adds the assertions about its own wire shapes (with `complete_translated`,
`tool_round_trip` and `stream_text` for the common half of those tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from stratus.llm import errors as e
from stratus.llm.catalog import Deployment, Price
from stratus.llm.types import ChatRequest, Completion, Message, StreamChunk, ToolCall
from tests.support.upstreams import Fault

TIMEOUT = 0.3
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

# Faults every adapter classifies alike; a subclass adds the ones its API answers its own way (auth among them).
COMMON_FAULTS = [
    pytest.param(Fault.status(429, retry_after=1), e.RateLimited, 429, id="429"),
    pytest.param(Fault.status(500), e.ServerError, 500, id="500"),
    pytest.param(Fault.status(503), e.Overloaded, 503, id="503"),
    pytest.param(Fault.delay(2.0), e.ProviderTimeout, None, id="timeout"),
    pytest.param(Fault.reset(), e.ProviderUnavailable, None, id="reset"),
    pytest.param(Fault.malformed(), e.MalformedResponse, 200, id="malformed"),
    pytest.param(Fault.context_length(), e.ContextLengthExceeded, 400, id="context_length"),
]


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content="Be brief."), Message(role="user", content=text)],
                       **kw)


def complete_translated(provider: Any, deployment: Deployment) -> Completion:
    """The common half of each translation test: text and usage come back; the wire is the caller's to check."""
    done = provider.complete(ask("what is pgvector", max_tokens=50, temperature=0.2, seed=7, stop=["\n\n"]),
                             deployment, timeout=TIMEOUT)
    assert done.text == "Echo: what is pgvector"
    assert done.finish_reason == "stop" and done.provider == deployment.provider and done.model == deployment.model
    # 2 system + 3 user words in; 4 words out; the server reports 2 of the input tokens as cached.
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.cached_input_tokens) == (5, 4, 2)
    return done


def tool_round_trip(provider: Any, deployment: Deployment) -> ToolCall:
    """A tool call, then its result sent back; returns the call (the wire of the follow-up is the caller's to check)."""
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
    return tc


def stream_text(provider: Any, deployment: Deployment) -> StreamChunk:
    """A streamed answer arrives as deltas and ends with a chunk carrying usage; returns that final chunk."""
    chunks = list(provider.stream(ask("stream this please"), deployment, timeout=TIMEOUT))

    assert "".join(c.text for c in chunks) == "Echo: stream this please"
    assert len([c for c in chunks if c.text]) == 4
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.usage is not None and final.usage.output_tokens == 4
    assert final.usage.cached_input_tokens == 2
    return final


class ProviderContract:
    """Subclass with `upstream_class`, `provider_class`, `deployment_fields` and `faults`."""

    upstream_class: ClassVar[type]
    provider_class: ClassVar[type]
    deployment_fields: ClassVar[dict[str, Any]]
    faults: ClassVar[list[Any]]

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "fault" in metafunc.fixturenames:
            metafunc.parametrize(("fault", "error", "status"), self.faults)

    @pytest.fixture(scope="class")
    @classmethod
    def upstream(cls) -> Iterator[Any]:
        with cls.upstream_class(cached_tokens=2) as up:
            yield up

    @pytest.fixture
    def up(self, upstream: Any) -> Any:
        upstream.clear()
        return upstream

    @pytest.fixture
    def deployment(self, upstream: Any) -> Deployment:
        return Deployment(price=Price(input=1, output=2), base_url=upstream.base_url, timeout_s=TIMEOUT,
                          **self.deployment_fields)

    @pytest.fixture(scope="class")
    @classmethod
    def provider(cls) -> Any:
        return cls.provider_class()

    def test_max_tokens_cuts_the_answer_with_finish_reason_length(self, up, deployment, provider):
        done = provider.complete(ask("one two three four five", max_tokens=2), deployment, timeout=TIMEOUT)
        assert (done.text, done.finish_reason, done.usage.output_tokens) == ("Echo: one", "length", 2)

    def test_stream_tool_call_fragments_assemble(self, up, deployment, provider):
        chunks = list(provider.stream(ask("call get_weather now", tools=[WEATHER]), deployment, timeout=TIMEOUT))
        deltas = [d for c in chunks for d in c.tool_calls]
        assert deltas[0].id and deltas[0].name == "get_weather"
        assert json.loads("".join(d.arguments for d in deltas)) == {"city": "call get_weather now"}
        assert chunks[-1].finish_reason == "tool_calls"

    def test_each_fault_is_a_typed_error_and_the_next_call_succeeds(self, up, deployment, provider, fault, error,
                                                                     status):
        up.inject(fault)
        with pytest.raises(error) as caught:
            provider.complete(ask("hello"), deployment, timeout=TIMEOUT)
        assert type(caught.value) is error
        assert caught.value.status == status and caught.value.deployment == deployment.name
        if status == 429:
            assert caught.value.retry_after == 1.0
        assert provider.complete(ask("hello"), deployment, timeout=TIMEOUT).text == "Echo: hello"

    def test_fractional_retry_after_comes_from_retry_after_ms(self, up, deployment, provider):
        up.inject(Fault.status(429, retry_after=0.25))
        with pytest.raises(e.RateLimited) as caught:
            provider.complete(ask("hello"), deployment, timeout=TIMEOUT)
        assert caught.value.retry_after == 0.25

    def test_stream_faults_before_the_first_byte_are_classified(self, up, deployment, provider):
        up.inject(Fault.status(429, retry_after=2))
        with pytest.raises(e.RateLimited) as caught:
            list(provider.stream(ask("hello"), deployment, timeout=TIMEOUT))
        assert caught.value.retry_after == 2.0

    def test_cut_stream_yields_what_arrived_then_raises_stream_interrupted(self, up, deployment, provider):
        up.inject(Fault.cut_stream(after_chunks=2))
        got = []
        with pytest.raises(e.StreamInterrupted) as caught:
            for chunk in provider.stream(ask("one two three four"), deployment, timeout=TIMEOUT):
                got.append(chunk)
        assert "".join(c.text for c in got) == "Echo: one"
        assert all(c.finish_reason is None and c.usage is None for c in got)  # nothing billable was reported
        assert caught.value.deployment == deployment.name

    def test_nothing_listening_is_provider_unavailable(self, deployment, provider):
        with self.upstream_class() as gone:
            url = gone.base_url
        closed = deployment.model_copy(update={"base_url": url})
        with pytest.raises(e.ProviderUnavailable):
            provider.complete(ask("hello"), closed, timeout=TIMEOUT)


class SdkProviderContract(ProviderContract):
    """Adapters over a vendor SDK: an API key is required, and one SDK client serves a deployment."""

    def test_one_client_is_reused_across_calls(self, up, deployment, provider):
        provider.complete(ask("a"), deployment, timeout=TIMEOUT)
        provider.complete(ask("b"), deployment, timeout=TIMEOUT)
        assert len([k for k in provider._clients if k[0] == deployment.base_url]) == 1

    def test_missing_api_key_fails_with_the_field_named(self, deployment, provider):
        keyless = deployment.model_copy(update={"api_key": None})
        with pytest.raises(e.AuthenticationFailed) as caught:
            provider.complete(ask("hello"), keyless, timeout=TIMEOUT)
        assert caught.value.field == "api_key"


def stream_error_then(provider: Any, deployment: Deployment, error: type[Exception]) -> pytest.ExceptionInfo:
    """An error event after the first chunk: what arrived is yielded, then `error` is raised."""
    got = []
    with pytest.raises(error) as caught:
        for chunk in provider.stream(ask("one two three"), deployment, timeout=TIMEOUT):
            got.append(chunk)
    assert "".join(c.text for c in got) == "Echo:"
    return caught
