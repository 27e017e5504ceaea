"""The Anthropic adapter driving the official SDK against a loopback Messages API server."""

from __future__ import annotations

import pytest

from stratus.llm import errors as e
from stratus.llm.providers.anthropic_messages import AnthropicProvider
from stratus.llm.types import ChatRequest, Message, ToolCall
from tests.integration.provider_contract import (
    COMMON_FAULTS,
    TIMEOUT,
    WEATHER,
    SdkProviderContract,
    ask,
    complete_translated,
    stream_error_then,
    stream_text,
    tool_round_trip,
)
from tests.support.upstreams import AnthropicUpstream, Fault


class TestAnthropic(SdkProviderContract):
    upstream_class = AnthropicUpstream
    provider_class = AnthropicProvider
    deployment_fields = {"name": "loop-anthropic", "provider": "anthropic", "model": "claude-test",
                         "api_key": "sk-test"}
    faults = [*COMMON_FAULTS, pytest.param(Fault.status(529), e.Overloaded, 529, id="529-overloaded"),
              pytest.param(Fault.auth(), e.AuthenticationFailed, 401, id="auth")]

    def test_complete_returns_text_usage_and_sends_the_translated_request(self, up, deployment, provider):
        done = complete_translated(provider, deployment)
        assert (done.provider, done.model) == ("anthropic", "claude-test")
        assert done.response_id and done.response_id.startswith("msg_")
        sent = up.requests[-1]
        assert sent.path == "/v1/messages" and "anthropic-version" in sent.headers
        assert sent.headers.get("x-api-key") == "sk-test" or sent.headers.get("authorization") == "Bearer sk-test"
        # The system turn moves to the `system` parameter; seed has no Messages equivalent and is not sent.
        assert sent.body["system"] == "Be brief."
        assert sent.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "what is pgvector"}]}]
        assert (sent.body["max_tokens"], sent.body["stop_sequences"]) == (50, ["\n\n"])
        assert not {"seed", "temperature"} & set(sent.body)  # the Messages API takes neither
        assert sent.headers["x-stainless-retry-count"] == "0"

    def test_max_tokens_defaults_to_the_deployment_limit(self, up, deployment, provider):
        provider.complete(ask("hello"), deployment, timeout=TIMEOUT)
        assert up.requests[-1].body["max_tokens"] == deployment.max_output_tokens

    def test_tool_call_and_round_trip(self, up, deployment, provider):
        tc = tool_round_trip(provider, deployment)
        sent = up.requests[-1].body
        assert sent["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
        wire = sent["messages"]
        assert wire[1] == {"role": "assistant", "content": [
            {"type": "tool_use", "id": tc.id, "name": "get_weather", "input": {"city": "use get_weather for Paris"}}]}
        assert wire[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tc.id,
                                                        "content": "sunny, 24 C"}]}

    def test_stream_yields_deltas_then_a_final_chunk_with_usage(self, up, deployment, provider):
        final = stream_text(provider, deployment)
        assert final.usage.input_tokens == 5  # Anthropic's uncached input_tokens plus the cache reads

    def test_overloaded_error_event_inside_the_stream_is_classified_like_529(self, up, deployment, provider):
        up.inject(Fault.stream_error(529, after_chunks=1))
        caught = stream_error_then(provider, deployment, e.Overloaded)
        assert caught.value.status == 529

    def test_consecutive_tool_results_merge_into_one_user_turn(self, up, deployment, provider):
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
