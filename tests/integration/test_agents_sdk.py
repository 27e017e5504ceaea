"""The OpenAI Agents SDK (openai-agents) as a client of Stratus, against recording loopback upstreams: agents
answering through the Responses API (the SDK's default model) and through Chat Completions, calling a function
tool and answering from its result (through every provider), streamed runs, structured output, model settings,
`previous_response_id`, handoffs. Each test asserts what the upstream received and what the agent returned.
The SDK's own tracing is off in every run (it would export to OpenAI's servers); a recording trace processor
proves no trace was made."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    ModelBehaviorError,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    WebSearchTool,
    function_tool,
)
from agents.tracing import Span, Trace, TracingProcessor, add_trace_processor
from openai.types.shared import Reasoning
from pydantic import BaseModel

from stratus_tools.local.server import GatewayServer
from tests.integration.gateway_support import loopback_gateway_fixtures, tenant_with_key
from tests.support.upstreams import Fault, Upstream

upstreams, settings, aws_credentials = loopback_gateway_fixtures("agents")

# What a team sets for an agent behind its own gateway: no trace export to OpenAI's servers.
NO_TRACING = RunConfig(tracing_disabled=True)


class TraceRecorder(TracingProcessor):
    """Records every trace and span the SDK would export."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_trace_start(self, trace: Trace) -> None:
        self.seen.append(f"trace:{trace.name}")

    def on_trace_end(self, trace: Trace) -> None: ...

    def on_span_start(self, span: Span[Any]) -> None:
        self.seen.append(f"span:{span.span_data.type}")

    def on_span_end(self, span: Span[Any]) -> None: ...

    def shutdown(self) -> None: ...

    def force_flush(self) -> None: ...


@pytest.fixture(scope="module")
def traces() -> TraceRecorder:
    recorder = TraceRecorder()
    add_trace_processor(recorder)
    return recorder


@pytest.fixture(scope="module")
def key(pg_url: str) -> str:
    return tenant_with_key(pg_url, "agents")[1]


@pytest.fixture
def up(upstreams: dict[str, Upstream], traces: TraceRecorder) -> Iterator[Upstream]:
    upstreams["openai"].clear()
    yield upstreams["openai"]
    assert traces.seen == []  # tracing_disabled held for the whole run


def _client(server: GatewayServer, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city's name.
    """
    return f"Sunny in {city}"


def test_an_agent_answers_through_the_responses_api(server: GatewayServer, key: str, up: Upstream) -> None:
    async def run() -> Any:
        client = _client(server, key)
        agent = Agent(name="support", instructions="Be brief.",
                      model=OpenAIResponsesModel(model="via-openai", openai_client=client),
                      model_settings=ModelSettings(temperature=0.2, max_tokens=40))
        result = await Runner.run(agent, "How are API keys rotated?", run_config=NO_TRACING)
        await client.close()
        return result

    result = asyncio.run(run())
    assert result.final_output == "Echo: How are API keys rotated?"
    assert result.context_wrapper.usage.output_tokens == 6 and result.context_wrapper.usage.requests == 1
    sent = up.requests[-1].body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "How are API keys rotated?"}]
    assert (sent["temperature"], sent["max_completion_tokens"]) == (0.2, 40)


def test_an_agent_answers_through_chat_completions(server: GatewayServer, key: str, up: Upstream) -> None:
    async def run() -> Any:
        client = _client(server, key)
        agent = Agent(name="support", instructions="Be brief.",
                      model=OpenAIChatCompletionsModel(model="via-openai", openai_client=client),
                      model_settings=ModelSettings(temperature=0.2, max_tokens=40))
        result = await Runner.run(agent, "How are API keys rotated?", run_config=NO_TRACING)
        await client.close()
        return result

    result = asyncio.run(run())
    assert result.final_output == "Echo: How are API keys rotated?"
    sent = up.requests[-1].body
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "How are API keys rotated?"}]
    assert sent["temperature"] == 0.2


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_an_agent_calls_a_function_tool_and_answers_from_its_result(api: str, server: GatewayServer, key: str,
                                                                   up: Upstream) -> None:
    async def run() -> Any:
        client = _client(server, key)
        model = (OpenAIResponsesModel(model="via-openai", openai_client=client) if api == "responses"
                 else OpenAIChatCompletionsModel(model="via-openai", openai_client=client))
        agent = Agent(name="weather", instructions="Use the tools.", model=model, tools=[get_weather])
        result = await Runner.run(agent, "get_weather for Oslo", run_config=NO_TRACING)
        await client.close()
        return result

    result = asyncio.run(run())
    assert result.final_output == "Echo: Sunny in get_weather for Oslo"
    calls = [i for i in result.new_items if i.type == "tool_call_item"]
    outputs = [i for i in result.new_items if i.type == "tool_call_output_item"]
    assert len(calls) == 1 and outputs[0].output == "Sunny in get_weather for Oslo"
    first, second = (r.body for r in up.requests)
    tool = first["tools"][0]["function"]
    assert tool["name"] == "get_weather" and tool["parameters"]["required"] == ["city"]
    assert tool.get("strict") is True  # the SDK's strict JSON schema, forwarded as it was sent
    call = second["messages"][-2]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "get_weather for Oslo"}'}
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": call["id"],
                                      "content": "Sunny in get_weather for Oslo"}


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_a_streamed_run_delivers_text_deltas_and_the_final_output(api: str, server: GatewayServer, key: str,
                                                                  up: Upstream) -> None:
    async def run() -> tuple[Any, list[str], list[str]]:
        client = _client(server, key)
        model = (OpenAIResponsesModel(model="via-openai", openai_client=client) if api == "responses"
                 else OpenAIChatCompletionsModel(model="via-openai", openai_client=client))
        agent = Agent(name="streamer", instructions="Be brief.", model=model, tools=[get_weather])
        result = Runner.run_streamed(agent, "get_weather for Bergen", run_config=NO_TRACING)
        deltas, kinds = [], []
        async for event in result.stream_events():
            kinds.append(event.type if event.type != "run_item_stream_event" else event.name)
            if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                deltas.append(event.data.delta)
        await client.close()
        return result, deltas, kinds

    result, deltas, kinds = asyncio.run(run())
    assert result.final_output == "Echo: Sunny in get_weather for Bergen" and len(deltas) > 1
    assert "".join(deltas) == result.final_output
    assert {"tool_called", "tool_output", "message_output_created"} <= set(kinds)
    assert all(r.body["stream"] is True for r in up.requests) and len(up.requests) == 2


CITATION = {"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 4, "url": "https://example.com/keys",
                                                     "title": "Key rotation"}}


def test_logprobs_and_annotations_reach_the_agents_raw_response(server: GatewayServer, key: str, up: Upstream,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an OpenAI upstream that cites a source (as its search models do)
    monkeypatch.setattr(up, "annotations", [CITATION])

    async def run() -> Any:
        client = _client(server, key)
        agent = Agent(name="support", model=OpenAIResponsesModel(model="via-openai", openai_client=client),
                      model_settings=ModelSettings(top_logprobs=2))
        result = await Runner.run(agent, "How are API keys rotated?", run_config=NO_TRACING)
        await client.close()
        return result

    # When an agent asks for logprobs (the SDK sends include: message.output_text.logprobs and top_logprobs)
    result = asyncio.run(run())
    sent = up.requests[-1].body
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    # Then the output text carries both, in the Responses API's shapes
    part = result.raw_responses[0].output[0].content[0]
    assert "".join(t.token for t in part.logprobs) == part.text == "Echo: How are API keys rotated?"
    assert len(part.logprobs[0].top_logprobs) == 2
    cited = part.annotations[0]
    assert (cited.type, cited.url, cited.title, cited.start_index, cited.end_index) == (
        "url_citation", "https://example.com/keys", "Key rotation", 0, 4)


def test_a_streamed_response_refuses_logprobs_naming_the_field(server: GatewayServer, key: str, up: Upstream) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="via-openai", input="hi", stream=True, include=["message.output_text.logprobs"])
    assert caught.value.param == "include" and up.requests == []


class Ticket(BaseModel):
    summary: str
    priority: int


def test_an_agents_structured_output_and_model_settings_reach_the_upstream(server: GatewayServer, key: str,
                                                                           up: Upstream) -> None:
    async def run() -> Any:
        client = _client(server, key)
        agent = Agent(name="triage", instructions="File a ticket.", output_type=Ticket,
                      model=OpenAIResponsesModel(model="via-openai", openai_client=client),
                      model_settings=ModelSettings(top_p=0.5, parallel_tool_calls=False, store=False,
                                                   metadata={"team": "support"}, truncation="disabled"))
        result = await Runner.run(agent, "The login page is down", run_config=NO_TRACING)
        await client.close()
        return result

    result = asyncio.run(run())
    assert result.final_output == Ticket(summary="Echo: The login page is down", priority=6)
    sent = up.requests[-1].body
    schema = sent["response_format"]["json_schema"]
    assert schema["name"] == "final_output" and schema["strict"] is True
    assert set(schema["schema"]["properties"]) == {"summary", "priority"}
    assert sent["top_p"] == 0.5 and "parallel_tool_calls" not in sent  # no tools: nothing to run in parallel
    response_id = result.raw_responses[0].response_id
    assert response_id is not None and response_id.startswith("resp_")
    with pytest.raises(openai.NotFoundError):  # store=False: nothing kept to continue from
        openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0).responses.retrieve(response_id)


def test_previous_response_id_continues_an_agents_conversation(server: GatewayServer, key: str, up: Upstream) -> None:
    async def run() -> tuple[Any, Any]:
        client = _client(server, key)
        agent = Agent(name="support", instructions="Be brief.",
                      model=OpenAIResponsesModel(model="via-openai", openai_client=client))
        first = await Runner.run(agent, "Our office plant is a fern", run_config=NO_TRACING)
        second = await Runner.run(agent, "Which plant is it?", previous_response_id=first.last_response_id,
                                  run_config=NO_TRACING)
        await client.close()
        return first, second

    first, second = asyncio.run(run())
    assert second.final_output == "Echo: Which plant is it?"
    # the second call sent only the new turn; the gateway put the stored conversation before it
    assert up.requests[-1].body["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Our office plant is a fern"},
        {"role": "assistant", "content": "Echo: Our office plant is a fern"},
        {"role": "user", "content": "Which plant is it?"}]
    assert first.last_response_id != second.last_response_id


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_a_handoff_passes_the_conversation_to_another_agent(api: str, server: GatewayServer, key: str,
                                                          up: Upstream) -> None:
    async def run() -> Any:
        client = _client(server, key)

        def model() -> Any:
            return (OpenAIResponsesModel(model="via-openai", openai_client=client) if api == "responses"
                    else OpenAIChatCompletionsModel(model="via-openai", openai_client=client))

        billing = Agent(name="billing", instructions="You handle invoices.", model=model())
        triage = Agent(name="triage", instructions="Route the customer.", model=model(), handoffs=[billing])
        result = await Runner.run(triage, "transfer_to_billing about my invoice", run_config=NO_TRACING)
        await client.close()
        return result

    result = asyncio.run(run())
    assert result.last_agent.name == "billing"
    first, second = (r.body for r in up.requests)
    assert first["tools"][0]["function"]["name"] == "transfer_to_billing"
    assert second["messages"][0] == {"role": "system", "content": "You handle invoices."}
    handed = second["messages"][-1]
    assert handed["role"] == "tool" and "billing" in handed["content"]
    assert result.final_output == f"Echo: {handed['content']}"


@pytest.mark.parametrize("stream", [False, True])
def test_service_tier_and_prompt_cache_settings_reach_the_upstream(stream: bool, server: GatewayServer, key: str,
                                                                   up: Upstream) -> None:
    async def run() -> Any:
        client = _client(server, key)
        settings = ModelSettings(prompt_cache_retention="24h", extra_args={"service_tier": "auto",
                                                                           "prompt_cache_key": "tenant-a"})
        agent = Agent(name="support", model=OpenAIResponsesModel(model="via-openai", openai_client=client),
                      model_settings=settings)
        if stream:
            streamed = Runner.run_streamed(agent, "How are API keys rotated?", run_config=NO_TRACING)
            final = [e.data.response async for e in streamed.stream_events()
                     if e.type == "raw_response_event" and e.data.type == "response.completed"]
            await client.close()
            return final[0]
        result = await Runner.run(agent, "How are API keys rotated?", run_config=NO_TRACING)
        response = await client.responses.retrieve(result.last_response_id)  # as stored, as it was sent
        await client.close()
        return response

    response = asyncio.run(run())
    sent = up.requests[-1].body
    assert (sent["service_tier"], sent["prompt_cache_key"], sent["prompt_cache_retention"]) == (
        "auto", "tenant-a", "24h")
    assert response.service_tier == "default" and response.prompt_cache_key == "tenant-a"  # served, not asked
    assert response.prompt_cache_retention == "24h" and response.background is False


@pytest.mark.parametrize("provider", ["anthropic", "bedrock"])
def test_an_agent_with_a_tool_works_through_any_provider(provider: str, server: GatewayServer, key: str,
                                                        upstreams: dict[str, Upstream], up: Upstream) -> None:
    upstreams[provider].clear()

    async def run() -> Any:
        client = _client(server, key)
        agent = Agent(name="weather", instructions="Use the tools.", tools=[get_weather],
                      model=OpenAIResponsesModel(model=f"via-{provider}", openai_client=client))
        result = await Runner.run(agent, "get_weather for Oslo", run_config=NO_TRACING)
        await client.close()
        return result

    result = asyncio.run(run())
    assert result.final_output == "Echo: Sunny in get_weather for Oslo"
    assert len(upstreams[provider].requests) == 2 and up.requests == []  # the call, then the answer from its result


def test_provider_failures_reach_the_agent_as_openais_exception_classes(server: GatewayServer, key: str,
                                                                        up: Upstream) -> None:
    async def run(stream: bool) -> None:
        client = _client(server, key)
        agent = Agent(name="support", model=OpenAIResponsesModel(model="via-openai", openai_client=client))
        try:
            if stream:
                result = Runner.run_streamed(agent, "stream this please", run_config=NO_TRACING)
                async for _event in result.stream_events():
                    pass
            else:
                await Runner.run(agent, "How are API keys rotated?", run_config=NO_TRACING)
        finally:
            await client.close()

    up.inject(Fault.status(429, retry_after=1))
    with pytest.raises(openai.RateLimitError) as limited:
        asyncio.run(run(stream=False))
    assert limited.value.response.headers["retry-after"] == "1"
    up.inject(Fault.stream_error(503, after_chunks=2))
    # a failure after the first byte: the `error` event (then response.failed), which the SDK raises as it
    # would against OpenAI
    with pytest.raises(ModelBehaviorError, match="terminal event `error`.*code=stream_interrupted"):
        asyncio.run(run(stream=True))


REFUSED = [  # what the chat pipeline cannot honour: a 400 naming the field, never a request half-served
    pytest.param({"model_settings": ModelSettings(truncation="auto")}, {}, "truncation", id="truncation-auto"),
    pytest.param({"model_settings": ModelSettings(reasoning=Reasoning(effort="low", summary="auto"))}, {},
                 "reasoning.summary", id="reasoning-summary"),
    pytest.param({"tools": [WebSearchTool()]}, {}, "tools.0.type", id="hosted-web-search"),
    pytest.param({}, {"conversation_id": "conv_123"}, "conversation", id="conversations-api"),
]


@pytest.mark.parametrize("agent_kwargs, run_kwargs, param", REFUSED)
def test_what_stratus_cannot_serve_is_a_400_naming_the_field(agent_kwargs: dict[str, Any], run_kwargs: dict[str, Any],
                                                             param: str, server: GatewayServer, key: str,
                                                             up: Upstream) -> None:
    async def run() -> None:
        client = _client(server, key)
        agent = Agent(name="support", model=OpenAIResponsesModel(model="via-openai", openai_client=client),
                      **agent_kwargs)
        try:
            await Runner.run(agent, "How are API keys rotated?", run_config=NO_TRACING, **run_kwargs)
        finally:
            await client.close()

    with pytest.raises(openai.BadRequestError) as caught:
        asyncio.run(run())
    assert caught.value.param == param and up.requests == []
