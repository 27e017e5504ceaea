"""The OpenAI adapter driving the official SDK against a loopback Chat Completions server."""

from __future__ import annotations

import pytest

from stratus.embeddings import get_embedder
from stratus.llm import errors as e
from stratus.llm.providers.openai_chat import COUNTING_MODEL, USAGE_COUNTED_EVENT, OpenAIProvider
from tests.integration.provider_contract import (
    COMMON_FAULTS,
    TIMEOUT,
    SdkProviderContract,
    ask,
    complete_translated,
    stream_error_then,
    stream_text,
    tool_round_trip,
)
from tests.support.upstreams import Fault, OpenAIUpstream


class TestOpenAI(SdkProviderContract):
    upstream_class = OpenAIUpstream
    provider_class = OpenAIProvider
    deployment_fields = {"name": "loop-openai", "provider": "openai", "model": "gpt-test", "api_key": "sk-test"}
    faults = [*COMMON_FAULTS, pytest.param(Fault.auth(), e.AuthenticationFailed, 401, id="auth")]

    def test_complete_returns_text_usage_and_sends_the_translated_request(self, up, deployment, provider):
        done = complete_translated(provider, deployment)
        assert (done.provider, done.model) == ("openai", "gpt-test")
        assert done.response_id and done.response_id.startswith("chatcmpl-")
        sent = up.requests[-1]
        assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == "Bearer sk-test"
        assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert (sent.body["max_completion_tokens"], sent.body["temperature"], sent.body["seed"],
                sent.body["stop"]) == (50, 0.2, 7, ["\n\n"])
        assert sent.headers["x-stainless-retry-count"] == "0"

    def test_tool_call_and_round_trip(self, up, deployment, provider):
        tc = tool_round_trip(provider, deployment)
        wire = up.requests[-1].body["messages"]
        assert wire[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": tc.arguments}
        assert wire[2] == {"role": "tool", "content": "sunny, 24 C", "tool_call_id": tc.id}

    def test_stream_yields_deltas_then_a_final_chunk_with_usage(self, up, deployment, provider):
        stream_text(provider, deployment)
        assert up.requests[-1].body["stream_options"] == {"include_usage": True}

    def test_a_stream_without_a_usage_chunk_completes_with_counted_tokens(self, up, deployment, provider, caplog):
        """An OpenAI-compatible server that ignores stream_options: the answer arrives whole and is billed."""
        up.honours_include_usage = False
        try:
            chunks = list(provider.stream(ask("stream this please"), deployment, timeout=TIMEOUT))
        finally:
            up.honours_include_usage = True  # the upstream is shared by the class's tests
        assert "".join(c.text for c in chunks) == "Echo: stream this please"
        final = chunks[-1]
        assert final.finish_reason == "stop" and final.usage is not None
        assert final.usage.output_tokens == get_embedder(COUNTING_MODEL).count_tokens("Echo: stream this please")
        assert final.usage.input_tokens > 0 and USAGE_COUNTED_EVENT in caplog.text

    def test_error_object_inside_the_stream_is_classified(self, up, deployment, provider):
        up.inject(Fault.stream_error(500, after_chunks=1))
        stream_error_then(provider, deployment, e.ServerError)

