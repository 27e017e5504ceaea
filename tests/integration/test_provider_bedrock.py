"""The Bedrock adapter driving boto3 (Converse, ConverseStream) against a loopback bedrock-runtime server."""

from __future__ import annotations

import pytest

from stratus.llm import errors as e
from stratus.llm.providers.bedrock_converse import BedrockProvider
from stratus.llm.types import ChatRequest, Message
from tests.integration.provider_contract import (
    COMMON_FAULTS,
    TIMEOUT,
    WEATHER,
    ProviderContract,
    ask,
    complete_translated,
    stream_error_then,
    stream_text,
    tool_round_trip,
)
from tests.support.upstreams import BedrockUpstream, Fault


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore signs every request; the loopback server does not check the signature.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


class TestBedrock(ProviderContract):
    upstream_class = BedrockUpstream
    provider_class = BedrockProvider
    deployment_fields = {"name": "loop-bedrock", "provider": "bedrock", "model": "amazon.nova-test-v1:0",
                         "region": "us-east-1"}
    faults = [*COMMON_FAULTS,
              pytest.param(Fault.status(408), e.ProviderTimeout, 408, id="408-model-timeout"),
              pytest.param(Fault.status(424), e.ServerError, 500, id="424-model-error"),
              pytest.param(Fault.auth(), e.AuthenticationFailed, 403, id="auth")]

    def test_complete_returns_text_usage_and_sends_the_translated_request(self, up, deployment, provider):
        done = complete_translated(provider, deployment)
        assert (done.provider, done.model) == ("bedrock", "amazon.nova-test-v1:0")
        assert done.response_id  # the x-amzn-RequestId
        sent = up.requests[-1]
        assert sent.path == "/model/amazon.nova-test-v1%3A0/converse"
        assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256")
        assert sent.body["system"] == [{"text": "Be brief."}]
        assert sent.body["messages"] == [{"role": "user", "content": [{"text": "what is pgvector"}]}]
        assert sent.body["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.2, "stopSequences": ["\n\n"]}
        assert "seed" not in str(sent.body)  # Converse has no seed

    def test_tool_call_and_round_trip(self, up, deployment, provider):
        tc = tool_round_trip(provider, deployment)
        sent = up.requests[-1].body
        assert sent["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {"json": WEATHER["function"]["parameters"]}
        wire = sent["messages"]
        assert wire[1] == {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": tc.id, "name": "get_weather", "input": {"city": "use get_weather for Paris"}}}]}
        assert wire[2] == {"role": "user", "content": [{"toolResult": {"toolUseId": tc.id,
                                                                       "content": [{"text": "sunny, 24 C"}]}}]}

    def test_stream_yields_deltas_then_a_final_chunk_with_usage(self, up, deployment, provider):
        final = stream_text(provider, deployment)
        assert final.usage.input_tokens == 5  # Bedrock's uncached inputTokens plus the cache reads
        assert up.requests[-1].path.endswith("/converse-stream")

    def test_one_client_is_reused_across_calls(self, up, deployment, provider):
        from stratus.aws.bedrock import runtime_client

        provider.complete(ask("a"), deployment, timeout=TIMEOUT)
        first = runtime_client(region="us-east-1", endpoint_url=deployment.base_url, timeout=TIMEOUT)
        provider.complete(ask("b"), deployment, timeout=0.25)  # rounds up to the same 0.3 s client
        assert runtime_client(region="us-east-1", endpoint_url=deployment.base_url, timeout=0.25) is first

    @pytest.mark.parametrize(("code", "error"), [(429, e.RateLimited), (503, e.Overloaded), (500, e.ServerError),
                                               (424, e.ServerError)],
                             ids=["throttlingException", "serviceUnavailableException", "internalServerException",
                                  "modelStreamErrorException"])
    def test_exception_event_inside_the_stream_is_classified(self, up, deployment, provider, code, error):
        up.inject(Fault.stream_error(code, after_chunks=1))
        stream_error_then(provider, deployment, error)

    def test_image_links_are_refused_naming_the_field(self, deployment, provider):
        request = ChatRequest(messages=[Message(role="user", content=[
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}])])
        with pytest.raises(e.InvalidRequest) as caught:
            provider.complete(request, deployment, timeout=TIMEOUT)
        assert caught.value.field == "messages[0].content[1].image_url"
