"""The Responses API with the official `openai` SDK's `client.responses` as the client: plain and streamed
responses, function calls and their outputs, structured output, state kept per tenant through
`previous_response_id`, stored responses read and deleted, errors (the gateway routes to a loopback
OpenAI server, which records what it received)."""

from __future__ import annotations

import openai
import pytest

from stratus_tools.local.server import GatewayServer
from tests.integration.gateway_support import LOOP_MODELS, loopback_gateway_fixtures, tenant_with_key
from tests.support.upstreams import Upstream

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


upstreams, settings, aws_credentials = loopback_gateway_fixtures("resp")


@pytest.fixture(scope="module")
def client(pg_url: str, server: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=tenant_with_key(pg_url, "resp")[1], max_retries=0)


@pytest.fixture
def openai_up(upstreams: dict[str, Upstream]) -> Upstream:
    upstreams["openai"].clear()
    return upstreams["openai"]


@pytest.mark.parametrize("provider", list(LOOP_MODELS))
def test_a_response_is_created_through_each_provider(client: openai.OpenAI, provider: str) -> None:
    response = client.responses.create(model=f"via-{provider}", input="How are API keys rotated?",
                                       instructions="Be brief.", max_output_tokens=64)
    assert response.object == "response" and response.status == "completed" and response.id.startswith("resp_")
    assert response.output_text == "Echo: How are API keys rotated?"
    assert response.usage is not None and response.usage.output_tokens == 6 and response.usage.input_tokens > 0
    assert response.model == f"via-{provider}" and response.instructions == "Be brief."


def test_the_upstream_receives_what_the_response_request_meant(client: openai.OpenAI, openai_up: Upstream) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    client.responses.create(
        model="via-openai", instructions="Be brief.", max_output_tokens=40, temperature=0.3, top_p=0.8,
        user="u-1", text={"format": {"type": "json_schema", "name": "reply", "schema": schema, "strict": True}},
        input=[{"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                            {"type": "input_image", "image_url": "https://example.com/a.png"}]}])
    sent = openai_up.requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][1]["content"][1] == {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    assert (sent["max_completion_tokens"], sent["temperature"], sent["top_p"], sent["user"]) == (40, 0.3, 0.8, "u-1")
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema,
                                                                            "strict": True}}


def test_previous_response_id_continues_the_stored_conversation(client: openai.OpenAI, openai_up: Upstream,
                                                                pg_url: str, server: GatewayServer) -> None:
    first = client.responses.create(model="via-openai", input="My favourite colour is teal.", instructions="Be brief.")
    second = client.responses.create(model="via-openai", input="Which colour do I like?", previous_response_id=first.id)
    sent = openai_up.requests[-1].body["messages"]
    assert sent == [{"role": "user", "content": "My favourite colour is teal."},  # instructions are not carried over
                    {"role": "assistant", "content": "Echo: My favourite colour is teal."},
                    {"role": "user", "content": "Which colour do I like?"}]
    assert second.previous_response_id == first.id
    assert client.responses.retrieve(first.id).output_text == "Echo: My favourite colour is teal."
    other = openai.OpenAI(base_url=f"{server.url}/v1", api_key=tenant_with_key(pg_url, "resp-other")[1],
                          max_retries=0)
    with pytest.raises(openai.NotFoundError) as hidden:  # another tenant's response does not exist for it
        other.responses.create(model="via-openai", input="hi", previous_response_id=first.id)
    assert hidden.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    response = client.responses.create(model="via-openai", input="Forget this.", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_a_function_call_and_its_output_round_trip(client: openai.OpenAI, openai_up: Upstream) -> None:
    first = client.responses.create(model="via-openai", input="get_weather for Paris", tools=[WEATHER],  # type: ignore[list-item]
                                    tool_choice="required")
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == '{"city": "get_weather for Paris"}'
    second = client.responses.create(model="via-openai", previous_response_id=first.id, tools=[WEATHER],  # type: ignore[list-item]
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "sunny, 24 C"}])
    wire = openai_up.requests[-1].body["messages"]
    assert wire[1]["tool_calls"][0]["id"] == call.call_id
    assert wire[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 24 C"}
    assert second.status == "completed"


def test_a_stream_arrives_as_responses_events(client: openai.OpenAI) -> None:
    with client.responses.stream(model="via-openai", input="stream this please") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Echo: stream this please" and [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "Echo: stream this please" and final.usage.output_tokens == 4  # type: ignore[union-attr]
    assert client.responses.retrieve(final.id).output_text == final.output_text  # stored at the end


def test_a_streamed_function_call(client: openai.OpenAI) -> None:
    with client.responses.stream(model="via-openai", input="get_weather for Oslo", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        final = stream.get_final_response()
    call = final.output[-1]
    assert call.type == "function_call" and call.arguments == '{"city": "get_weather for Oslo"}'


def test_a_response_cut_by_max_output_tokens_is_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(model="via-openai", input="one two three four five six", max_output_tokens=3)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]


def test_bad_requests_name_their_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="via-openai", input="hi", tools=[{"type": "web_search"}])  # type: ignore[list-item]
    assert "tools" in (bad.value.body["param"] or "")  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad_id:
        client.responses.create(model="via-openai", input="hi", previous_response_id="not-an-id")
    assert bad_id.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="hi")
