"""POST /v1/messages with the official `anthropic` SDK as the client: plain and streamed answers, tools and
tool results, images, errors in Anthropic's shape, through the same pipeline as chat completions (the
gateway routes to each provider's loopback server, which records what it received)."""

from __future__ import annotations

import base64

import anthropic
import pytest

from stratus_tools.local.server import GatewayServer
from tests.integration.gateway_support import LOOP_MODELS, loopback_gateway_fixtures, tenant_with_key
from tests.support.upstreams import Fault, Upstream

WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
PIXEL = base64.b64encode(bytes.fromhex("89504e470d0a1a0a")).decode()


upstreams, settings, aws_credentials = loopback_gateway_fixtures("msgs")


@pytest.fixture(scope="module")
def client(pg_url: str, server: GatewayServer) -> anthropic.Anthropic:
    key = tenant_with_key(pg_url, "msgs")[1]
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0)


@pytest.mark.parametrize("provider", list(LOOP_MODELS))
def test_a_message_is_answered_through_each_provider(client: anthropic.Anthropic, upstreams: dict[str, Upstream],
                                                     provider: str) -> None:
    up = upstreams[provider]
    up.clear()
    message = client.messages.create(model=f"via-{provider}", max_tokens=64, system="Be brief.",
                                     messages=[{"role": "user", "content": "How are API keys rotated?"}],
                                     stop_sequences=["\n\n"])
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Echo: How are API keys rotated?"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.model == f"via-{provider}"
    assert message.usage.output_tokens == 6 and message.usage.input_tokens > 0
    assert len(up.requests) == 1  # the request reached this provider, translated by its adapter


def test_the_openai_upstream_receives_what_the_messages_request_meant(client: anthropic.Anthropic,
                                                                     upstreams: dict[str, Upstream]) -> None:
    up = upstreams["openai"]
    up.clear()
    client.messages.create(model="via-openai", max_tokens=64, system=[{"type": "text", "text": "Be brief."}],
                           stop_sequences=["END"], metadata={"user_id": "u-7"},
                           extra_body={"temperature": 0.5, "top_p": 0.9},  # what older clients send
                           messages=[{"role": "user", "content": [
                               {"type": "text", "text": "What is in this picture?"},
                               {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                            "data": PIXEL}}]}])
    sent = up.requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1]["content"][1] == {"type": "image_url",
                                                  "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    assert (sent["stop"], sent["temperature"], sent["top_p"], sent["user"]) == (["END"], 0.5, 0.9, "u-7")
    assert sent["max_completion_tokens"] == 64


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_tool_use_and_its_result_round_trip(client: anthropic.Anthropic, upstreams: dict[str, Upstream],
                                            provider: str) -> None:
    ask = {"role": "user", "content": "get_weather for Paris"}
    first = client.messages.create(model=f"via-{provider}", max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
                                   tool_choice={"type": "any"}, messages=[ask])  # type: ignore[list-item]
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert call.input == {"city": "get_weather for Paris"}
    up = upstreams[provider]
    up.clear()
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 24 C"}
    second = client.messages.create(model=f"via-{provider}", max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
                                    messages=[ask, {"role": "assistant", "content": first.content},  # type: ignore[list-item]
                                              {"role": "user", "content": [result]}])  # type: ignore[list-item]
    assert second.stop_reason == "end_turn"
    if provider == "openai":
        wire = up.requests[-1].body["messages"]
        assert wire[1]["tool_calls"][0]["id"] == call.id
        assert wire[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"}
    else:  # back in Anthropic's own shape at the Anthropic upstream
        wire = up.requests[-1].body["messages"]
        assert wire[-1]["content"][0]["type"] == "tool_result" and wire[-1]["content"][0]["tool_use_id"] == call.id


def test_a_stream_arrives_as_messages_events(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="via-openai", max_tokens=64,
                                messages=[{"role": "user", "content": "stream this please"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Echo: stream this please"
    assert final.content[0].text == text and final.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert final.usage.output_tokens == 4 and final.usage.input_tokens > 0


def test_a_streamed_tool_call_arrives_as_a_tool_use_block(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="via-openai", max_tokens=100, tools=[WEATHER],  # type: ignore[list-item]
                                messages=[{"role": "user", "content": "get_weather for Oslo"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    block = final.content[-1]
    assert block.type == "tool_use" and block.input == {"city": "get_weather for Oslo"}


def test_errors_take_anthropics_shape_and_classes(client: anthropic.Anthropic, server: GatewayServer,
                                                  upstreams: dict[str, Upstream]) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="via-openai", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in bad.value.message
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.AuthenticationError) as denied:
        anthropic.Anthropic(base_url=server.url, api_key="sk-wrong", max_retries=0).messages.create(
            model="via-openai", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    upstreams["openai"].clear()
    upstreams["openai"].inject(Fault.status(429, retry_after=1))
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="via-openai", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert limited.value.response.headers["retry-after"] == "1"


def test_a_block_that_is_not_supported_names_its_place(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="via-openai", max_tokens=5, messages=[{"role": "assistant", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}}]}])
    assert "messages.0.content.0" in bad.value.message
    with pytest.raises(anthropic.BadRequestError) as unknown:
        client.messages.create(model="via-openai", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                               thinking={"type": "enabled", "budget_tokens": 1024})
    assert "thinking" in unknown.value.message


def test_structured_output_reaches_the_provider_as_a_json_schema(client: anthropic.Anthropic,
                                                                 upstreams: dict[str, Upstream]) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    up = upstreams["openai"]
    up.clear()
    client.messages.create(model="via-openai", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
                           output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "low"})
    sent = up.requests[-1].body
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert sent["reasoning_effort"] == "low"
