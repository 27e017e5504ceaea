"""Pure translation and classification rules of the provider adapters (no sockets)."""

from __future__ import annotations

import base64
import json
import time
from email.utils import formatdate

import pytest
from botocore.exceptions import ClientError, EventStreamError

from stratus.embeddings import get_embedder
from stratus.llm import errors as e
from stratus.llm.catalog import Deployment, Price
from stratus.llm.providers import anthropic_messages as anth
from stratus.llm.providers import bedrock_converse as bedrock
from stratus.llm.providers import openai_chat as oai
from stratus.llm.providers._classify import for_status, retry_after
from stratus.llm.types import ChatRequest, Message, ToolCall

DEP = Deployment(name="d1", provider="openai", model="m1", price=Price(input=1, output=1), max_output_tokens=321)
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def conversation() -> ChatRequest:
    return ChatRequest(tools=[TOOL], messages=[
        Message(role="system", content="Rule one."),
        Message(role="developer", content="Rule two."),
        Message(role="user", content=[{"type": "text", "text": "look at"},
                                      {"type": "image_url", "image_url": {"url": PNG}}]),
        Message(role="assistant", tool_calls=[ToolCall(id="c1", name="lookup", arguments='{"q": "x"}')]),
        Message(role="tool", tool_call_id="c1", content="found"),
    ])


@pytest.mark.parametrize(("headers", "expected"), [
    ({"retry-after-ms": "250"}, 0.25),
    ({"Retry-After": "3"}, 3.0),
    ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
    ({"retry-after": "soon"}, None),
    ({}, None),
])
def test_retry_after_headers(headers, expected):
    assert retry_after(headers) == expected


def test_retry_after_as_http_date():
    assert 3 <= retry_after({"retry-after": formatdate(time.time() + 5, usegmt=True)}) <= 5


@pytest.mark.parametrize(("status", "error"), [
    (429, e.RateLimited), (503, e.Overloaded), (529, e.Overloaded), (500, e.ServerError), (502, e.ServerError),
    (408, e.ProviderTimeout), (401, e.AuthenticationFailed), (403, e.AuthenticationFailed), (404, e.InvalidRequest),
    (422, e.InvalidRequest),
])
def test_status_classification(status, error):
    err = for_status(status, "x", deployment="d1")
    assert type(err) is error and err.status == status and err.deployment == "d1"
    assert type(for_status(status, "x", deployment="d1", context_length=True)) is e.ContextLengthExceeded


# OpenAI
def test_openai_params_pass_roles_and_parts_through_and_omit_unset_options():
    params = oai.build_params(conversation(), DEP)
    assert [m["role"] for m in params["messages"]] == ["system", "developer", "user", "assistant", "tool"]
    assert params["messages"][2]["content"][1]["image_url"]["url"] == PNG
    assert params["messages"][3]["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}]
    assert not {"temperature", "seed", "max_completion_tokens", "response_format"} & set(params)


@pytest.mark.parametrize("body", [
    {"choices": []},
    {"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]},  # no usage: cannot be billed
    {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}},
    "not an object",
])
def test_openai_incomplete_bodies_are_malformed(body):
    with pytest.raises(e.MalformedResponse):
        oai.parse_completion(body, DEP)


def test_openai_stream_without_finish_reason_is_interrupted():
    asm = oai.StreamAssembler(DEP)
    asm.feed({"model": "m1", "choices": [{"delta": {"content": "hi"}, "finish_reason": None}]})
    with pytest.raises(e.StreamInterrupted, match="finish_reason"):
        asm.final()


def test_openai_stream_without_usage_chunk_is_completed_with_counted_tokens(caplog):
    request = ChatRequest(messages=[Message(role="user", content="How many tokens is this question?")])
    asm = oai.StreamAssembler(DEP, request)
    asm.feed({"model": "m1", "choices": [{"delta": {"content": "Seven words "}}]})
    asm.feed({"model": "m1", "choices": [{"delta": {"content": "make this short answer."}, "finish_reason": "stop"}]})
    final = asm.final()
    count = get_embedder(oai.COUNTING_MODEL).count_tokens
    assert final.finish_reason == "stop" and final.usage is not None
    assert final.usage.input_tokens == count("user: How many tokens is this question?") > 0
    assert final.usage.output_tokens == count("Seven words make this short answer.") > 0
    assert oai.USAGE_COUNTED_EVENT in caplog.text


# Anthropic
def test_anthropic_params_move_system_and_translate_tools_and_images():
    request = conversation().model_copy(update={"tool_choice": "required", "seed": 3, "response_format": {
        "type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}})
    params = anth.build_params(request, DEP)
    assert params["system"] == "Rule one.\n\nRule two."
    assert params["max_tokens"] == 321  # required by the API: the deployment's limit when unset
    assert params["tool_choice"] == {"type": "any"}
    assert params["tools"] == [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}]
    assert params["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert "seed" not in params
    user, assistant, tool = params["messages"]
    assert user["content"][1]["source"] == {"type": "base64", "media_type": "image/png",
                                            "data": PNG.split(",", 1)[1]}
    assert assistant["content"] == [{"type": "tool_use", "id": "c1", "name": "lookup", "input": {"q": "x"}}]
    assert tool == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "found"}]}


def test_anthropic_refuses_what_it_cannot_express_naming_the_field():
    audio = ChatRequest(messages=[Message(role="user", content=[{"type": "input_audio", "input_audio": {}}])])
    with pytest.raises(e.InvalidRequest) as caught:
        anth.build_params(audio, DEP)
    assert caught.value.field == "messages[0].content[0].type"
    bad_args = ChatRequest(messages=[Message(role="user", content="x"), Message(
        role="assistant", tool_calls=[ToolCall(id="c", name="lookup", arguments="{not json")])])
    with pytest.raises(e.InvalidRequest) as caught:
        anth.build_params(bad_args, DEP)
    assert caught.value.field == "messages[1].tool_calls[0].arguments"


def test_anthropic_usage_counts_cache_reads_and_writes_as_input():
    done = anth.parse_message({"id": "m", "content": [{"type": "text", "text": "a"}], "stop_reason": "max_tokens",
                               "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 100,
                                         "cache_creation_input_tokens": 5}}, DEP)
    assert (done.usage.input_tokens, done.usage.cached_input_tokens, done.finish_reason) == (115, 100, "length")


# Bedrock
def test_bedrock_params_translate_system_images_and_tool_turns():
    params = bedrock.build_params(conversation().model_copy(update={"max_tokens": 9, "tool_choice": "required"}), DEP)
    assert params["system"] == [{"text": "Rule one."}, {"text": "Rule two."}]
    assert params["inferenceConfig"] == {"maxTokens": 9}
    assert params["toolConfig"]["toolChoice"] == {"any": {}}
    user, assistant, tool = params["messages"]
    assert user["content"][1] == {"image": {"format": "png", "source": {"bytes": b"\x89PNG fake"}}}
    assert assistant["content"] == [{"toolUse": {"toolUseId": "c1", "name": "lookup", "input": {"q": "x"}}}]
    assert tool["content"] == [{"toolResult": {"toolUseId": "c1", "content": [{"text": "found"}]}}]


def test_bedrock_tool_choice_none_drops_tools_only_when_no_turn_used_one():
    fresh = ChatRequest(messages=[Message(role="user", content="hi")], tools=[TOOL], tool_choice="none")
    assert "toolConfig" not in bedrock.build_params(fresh, DEP)
    # Converse rejects toolUse blocks without a toolConfig, so the tools stay when the history has them.
    assert "toolConfig" in bedrock.build_params(conversation().model_copy(update={"tool_choice": "none"}), DEP)


def _client_error(code: str, message: str, status: int, headers: dict | None = None) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}}, "Converse")


@pytest.mark.parametrize(("err", "expected", "status"), [
    (_client_error("ValidationException", "Input is too long for requested model.", 400), e.ContextLengthExceeded, 400),
    (_client_error("ValidationException", "messages.0: unknown field", 400), e.InvalidRequest, 400),
    (_client_error("ThrottlingException", "slow down", 429, {"retry-after": "4"}), e.RateLimited, 429),
    (_client_error("ServiceUnavailableException", "busy", 503), e.Overloaded, 503),
    (_client_error("ModelTimeoutException", "slow model", 408), e.ProviderTimeout, 408),
    (_client_error("ModelErrorException", "bad model", 424), e.ServerError, 500),
    (_client_error("AccessDeniedException", "no", 403), e.AuthenticationFailed, 403),
    (EventStreamError({"Error": {"Code": "modelStreamErrorException", "Message": "boom"}}, "ConverseStream"),
     e.ServerError, 500),
    (EventStreamError({"Error": {"Code": "throttlingException", "Message": "slow"}}, "ConverseStream"),
     e.RateLimited, 429),
])
def test_bedrock_error_codes(err, expected, status):
    got = bedrock.classify(err, DEP)
    assert type(got) is expected and got.status == status and got.deployment == "d1"
    if expected is e.RateLimited and status == 429 and "retry-after" in json.dumps(err.response):
        assert got.retry_after == 4.0


def test_bedrock_stream_without_metadata_is_interrupted():
    asm = bedrock.StreamAssembler(DEP)
    assert asm.feed({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "hi"}}}).text == "hi"
    asm.feed({"messageStop": {"stopReason": "end_turn"}})
    with pytest.raises(e.StreamInterrupted, match="metadata"):
        asm.final()
