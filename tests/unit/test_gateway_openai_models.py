"""The OpenAI request bodies: what is accepted, what is refused and how (400 naming the field, for the
schema and for semantics alike)."""

from __future__ import annotations

import pydantic
import pytest

from stratus.gateway.app import validation_error
from stratus.gateway.errors import APIError
from stratus.gateway.openai_models import ChatCompletionRequest, EmbeddingRequest
from stratus.generation.streaming import split_text


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "fast", "messages": [{"role": "user", "content": "hi"}],
                                                 **fields})


def test_every_role_content_parts_tool_calls_and_echoed_fields_are_accepted() -> None:
    body = chat(messages=[
        {"role": "developer", "content": "be brief"},
        {"role": "system", "content": [{"type": "text", "text": "sys"}]},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}],
         "name": "ann"},
        {"role": "assistant", "content": None, "refusal": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ])
    domain = [m.as_domain() for m in body.messages]
    assert domain[3]["tool_calls"] == [{"id": "c1", "name": "f", "arguments": "{}"}]
    assert domain[4]["tool_call_id"] == "c1" and domain[2]["name"] == "ann"


def test_max_completion_tokens_wins_and_stop_becomes_a_list() -> None:
    body = chat(max_tokens=10, max_completion_tokens=20, stop="END", temperature=0.5)
    assert body.output_limit == 20
    assert body.parameters(body.output_limit) == {"max_tokens": 20, "stop": ["END"], "temperature": 0.5}


def test_other_openai_parameters_and_unknown_names_travel_by_name_for_the_table_to_decide() -> None:
    body = chat(presence_penalty=0.5, logit_bias={"1": 2}, parallel_tool_calls=False, reasoning_effort="low",
                safety_identifier="u-1", top_k=40, stratus={"cache": False})
    params = body.parameters(None)
    assert params["parallel_tool_calls"] is False and params["reasoning_effort"] == "low"
    assert params["safety_identifier"] == "u-1"
    assert params["passthrough"] == {"presence_penalty": 0.5, "logit_bias": {"1": 2}, "top_k": 40}
    assert "stratus" not in params["passthrough"]  # Stratus's own options are never forwarded
    assert "passthrough" not in chat(temperature=0.1).parameters(None)


def test_unknown_names_are_refused_when_forwarding_them_is_off() -> None:
    chat(tempreature=1).refuse_unsupported(forward_unknown=True)
    with pytest.raises(APIError) as caught:
        chat(tempreature=1).refuse_unsupported(forward_unknown=False)
    err = caught.value
    assert err.status == 400 and err.param == "tempreature" and err.code == "unknown_parameter"


@pytest.mark.parametrize(("fields", "param"), [({"logprobs": True, "stream": True}, "logprobs"),
                                               ({"n": 2, "stream": True}, "n"),
                                               ({"top_logprobs": 2, "stream": True}, "logprobs"),
                                               ({"stream_options": {"include_usage": True}}, "stream_options")])
def test_what_cannot_be_delivered_is_400_naming_it(fields: dict[str, object], param: str) -> None:
    with pytest.raises(APIError) as caught:
        chat(**fields).refuse_unsupported()
    assert caught.value.status == 400 and caught.value.param == param


def test_schema_errors_name_the_dotted_field() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        chat(messages=[{"role": "user", "content": [{"text": "no type"}]}])
    assert validation_error(caught.value.errors()).param == "messages.0.content"
    with pytest.raises(pydantic.ValidationError) as caught:
        chat(messages=[])
    assert validation_error(caught.value.errors()).param == "messages"


def test_embedding_inputs() -> None:
    assert EmbeddingRequest(model="m", input="one").texts(10) == ["one"]
    assert EmbeddingRequest(model="m", input=["a", "b"], dimensions=384).texts(10) == ["a", "b"]
    for body, param in [(EmbeddingRequest(model="m", input=[1, 2]), "input"),
                        (EmbeddingRequest(model="m", input=[[1], [2]]), "input"),
                        (EmbeddingRequest(model="m", input=["a", " "]), "input"),
                        (EmbeddingRequest(model="m", input=["a"] * 3), "input")]:
        # (`dimensions` is checked per model by the route: tests/integration/test_gateway_embeddings.py)
        with pytest.raises(APIError) as caught:
            body.texts(2)
        assert caught.value.status == 400 and caught.value.param == param


@pytest.mark.parametrize("text", ["", "one", "a few words to split into pieces here", "x" * 50])
def test_a_cached_answer_is_replayed_in_pieces_that_join_to_the_text(text: str) -> None:
    pieces = split_text(text, 4)
    assert "".join(pieces) == text and len(pieces) <= 4 + 1
