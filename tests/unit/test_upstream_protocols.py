"""The loopback upstreams' pure parts: the answer rule and the AWS event-stream framing (no sockets)."""

from __future__ import annotations

import json

import pytest
from botocore.eventstream import EventStreamBuffer

from tests.support.upstreams import anthropic_messages, bedrock_converse, eventstream, openai_chat
from tests.support.upstreams._base import compose

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city", "days"]}


def test_echo_counts_words_and_cuts_at_max_tokens():
    r = compose(last_text="a b c d", last_is_tool_result=False, tools=[], all_text=["sys prompt", "a b c d"],
                max_tokens=3, cached_tokens=10)
    assert (r.text, r.finish, r.input_tokens, r.output_tokens, r.cached_tokens) == ("Echo: a b", "length", 6, 3, 6)
    assert r.words() == ["Echo:", " a", " b"]


def test_naming_a_tool_calls_it_with_the_text_in_required_string_properties():
    r = compose(last_text="please get_weather", last_is_tool_result=False, tools=[("get_weather", SCHEMA)],
                all_text=["please get_weather"], max_tokens=None, cached_tokens=0)
    assert (r.tool_name, r.tool_arguments, r.finish) == ("get_weather", {"city": "please get_weather"}, "tool_calls")
    after = compose(last_text="22 C", last_is_tool_result=True, tools=[("get_weather", SCHEMA)], all_text=[],
                    max_tokens=None, cached_tokens=0)
    assert (after.tool_name, after.text) == (None, "Echo: 22 C")


def test_each_protocol_reads_the_last_user_turn_and_tool_results():
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    assert openai_chat.reply_for({"messages": [{"role": "user", "content": "run lookup"}], "tools": tools}).tool_name \
        == "lookup"
    assert anthropic_messages.reply_for({"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "42"}]}]}).text == "Echo: 42"
    assert bedrock_converse.reply_for({"system": [{"text": "be kind"}], "messages": [
        {"role": "user", "content": [{"text": "hi there"}]}]}).input_tokens == 4


def test_event_stream_frames_parse_with_botocore():
    data = eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hé"}})
    data += eventstream.exception("throttlingException", "slow down")
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    first, second = list(buffer)
    assert first.headers == {":event-type": "contentBlockDelta", ":content-type": "application/json",
                             ":message-type": "event"}
    assert json.loads(first.payload) == {"contentBlockIndex": 0, "delta": {"text": "hé"}}
    assert second.headers[":exception-type"] == "throttlingException"
    assert [h for h, _ in eventstream.decode_messages(data)] == [first.headers, second.headers]


def test_event_stream_decoder_rejects_a_corrupted_frame():
    data = bytearray(eventstream.event("messageStop", {"stopReason": "end_turn"}))
    data[-6] ^= 0xFF
    with pytest.raises(ValueError, match="CRC"):
        eventstream.decode_messages(bytes(data))
