"""The parameter table (stratus.llm.parameters): complete against the installed SDK, its routing decisions,
and each adapter's translation of the parameters the table says it translates (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import completion_create_params

from stratus.llm import errors as e
from stratus.llm import parameters as p
from stratus.llm.catalog import Deployment, Price
from stratus.llm.providers import anthropic_messages as anth
from stratus.llm.providers import bedrock_converse as bedrock
from stratus.llm.providers import openai_chat as oai
from stratus.llm.types import ChatRequest, Message

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def dep(provider: str, model: str = "m1", max_output_tokens: int = 4096) -> Deployment:
    return Deployment(name=f"{provider}-1", provider=provider, model=model, price=Price(input=1, output=1),
                      max_output_tokens=max_output_tokens)


def request(**fields: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="hi")], **fields)  # type: ignore[arg-type]


def test_the_table_lists_every_parameter_of_the_installed_sdk_and_nothing_else() -> None:
    sdk = set(completion_create_params.CompletionCreateParamsBase.__annotations__) | {"stream"}
    assert set(p.TABLE) == sdk


def test_no_provider_silently_drops_a_parameter() -> None:
    for parameter in p.PARAMETERS:
        for provider in p.PROVIDERS:
            rule = parameter.rule(provider)
            assert rule.handling in ("forward", "translate", "refuse", "gateway")
            assert rule.handling in ("forward", "gateway") or rule.to, (parameter.name, provider)


@pytest.mark.parametrize(("provider", "model", "values", "refused"), [
    ("openai", "gpt", {"seed": 1, "logprobs": True, "top_k": 3, "presence_penalty": 1.0}, None),
    ("openai", "gpt", {"n": 2}, None),
    ("anthropic", "claude", {"n": 2}, "n"),
    ("openai", "gpt", {"n": 1}, None),
    ("anthropic", "claude", {"seed": 1}, "seed"),
    ("anthropic", "claude", {"stop": ["x"], "parallel_tool_calls": False, "reasoning_effort": "low"}, None),
    ("anthropic", "claude", {"presence_penalty": 0, "logprobs": False, "n": 1, "modalities": ["text"]}, None),
    ("anthropic", "claude", {"top_k": 3}, "top_k"),
    ("bedrock", "anthropic.claude-sonnet-4", {"reasoning_effort": "high"}, None),
    ("bedrock", "amazon.nova-pro-v1:0", {"reasoning_effort": "high"}, "reasoning_effort"),
    ("bedrock", "amazon.nova-pro-v1:0", {"parallel_tool_calls": True, "service_tier": "auto"}, None),
    ("bedrock", "amazon.nova-pro-v1:0", {"user": "u"}, "user"),
    ("offline", "stratus-offline-extractive", {"seed": 1, "top_k": 3}, None),
])
def test_refusal(provider: str, model: str, values: dict[str, object], refused: str | None) -> None:
    found = p.refusal(provider, model, values)
    assert (found.parameter if found else None) == refused


def test_deployments_that_cannot_honour_are_left_out_and_none_left_names_the_parameter() -> None:
    a, o, b = dep("anthropic"), dep("openai"), dep("bedrock")
    assert p.honouring([a, o, b], {"seed": 7}) == ([o], None)
    kept, refused = p.honouring([a, b], {"seed": 7})
    assert kept == [] and refused is not None and refused.parameter == "seed" and refused.provider == "anthropic"
    assert "seed" in refused.message()
    assert p.honouring([a, b], {}) == ([a, b], None)


def test_openai_forwards_everything_by_name_and_unknown_names_go_in_the_sdks_extra_body() -> None:
    req = request(parallel_tool_calls=False, reasoning_effort="high", service_tier="flex", safety_identifier="s",
                  passthrough={"logprobs": True, "top_logprobs": 2, "verbosity": "low", "top_k": 5})
    params = oai.build_params(req, dep("openai"))
    assert params["parallel_tool_calls"] is False and params["reasoning_effort"] == "high"
    assert params["service_tier"] == "flex" and params["safety_identifier"] == "s"
    assert params["logprobs"] is True and params["verbosity"] == "low" and params["top_k"] == 5
    args = oai.sdk_arguments(params | {"stream": True})
    assert args["extra_body"] == {"top_k": 5} and "top_k" not in args and args["stream"] is True


def test_anthropic_translations() -> None:
    req = request(tools=[TOOL], parallel_tool_calls=False, reasoning_effort="medium", service_tier="default",
                  safety_identifier="sid", user="u", stop=["END"], max_tokens=5000)
    params = anth.build_params(req, dep("anthropic"))
    assert params["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert params["thinking"] == {"type": "enabled", "budget_tokens": 4999}  # cut below max_tokens
    assert params["service_tier"] == "standard_only"
    assert params["metadata"] == {"user_id": "sid"} and params["stop_sequences"] == ["END"]
    named = anth.build_params(request(tools=[TOOL], tool_choice="required", parallel_tool_calls=False),
                              dep("anthropic"))
    assert named["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert anth.build_params(request(reasoning_effort="none"), dep("anthropic"))["thinking"] == {"type": "disabled"}


@pytest.mark.parametrize(("fields", "field"), [
    ({"reasoning_effort": "low", "max_tokens": 1000}, "reasoning_effort"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
])
def test_anthropic_refuses_values_without_a_counterpart(fields: dict[str, object], field: str) -> None:
    with pytest.raises(e.InvalidRequest) as caught:
        anth.build_params(request(**fields), dep("anthropic"))
    assert caught.value.field == field


def test_bedrock_claude_thinking_goes_in_additional_model_request_fields() -> None:
    params = bedrock.build_params(request(reasoning_effort="low"), dep("bedrock", "anthropic.claude-3-7-sonnet",
                                                                       max_output_tokens=8000))
    assert params["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    assert params["inferenceConfig"]["maxTokens"] == 8000


def _response(other: str, c: str) -> tuple[Any, Any]:
    from stratus.guard.policy import effective
    from stratus.workflow_state import GenerateResponse, GenerateTask, GuardState

    task = GenerateTask.model_validate({
        "request_id": "r1", "tenant_id": "t1", "mode": "chat", "messages": [{"role": "user", "content": "hi"}],
        "guard": GuardState(policy=effective().model_dump()["rails"], canary=c).model_dump()})
    response = GenerateResponse.model_validate({
        "request_id": "r1", "tenant_id": "t1", "mode": "chat", "text": "Hello there.", "finish_reason": "stop",
        "model_alias": "a", "deployment": "d", "provider": "openai", "model": "m", "offline": False,
        "prompt": {"name": "p", "version": 1, "hash": "h"}, "usage": {}, "cost_usd": 0, "cache": {"status": "bypass"},
        "wire": {"choice": {"logprobs": {"content": []}}, "choices": [
            {"index": 1, "message": {"role": "assistant", "content": other}, "logprobs": {"content": []}}]}})
    return task, response


def test_every_choice_of_n_passes_the_output_rails() -> None:
    from stratus.guard.output import new_canary
    from stratus.guard.stages import guard_output

    canary = new_canary()
    task, response = _response("Nothing to see.", canary)
    passed = guard_output(task, response)
    assert passed.wire["choices"][0]["message"]["content"] == "Nothing to see." and passed.wire["choice"]
    task, response = _response(f"The hidden marker is {canary}.", canary)
    blocked = guard_output(task, response)  # one leaking choice blocks the whole answer
    assert blocked.guard is not None and blocked.guard.blocked is not None and blocked.wire == {}
    # The verdicts name the choice they are about: the first's carry no index, the second's carry 1.
    assert blocked.guard.blocked.rail == "canary" and blocked.guard.blocked.details["choice"] == 1
    assert [v.details.get("choice") for v in blocked.guard.verdicts if v.rail == "canary"] == [None, 1]
    task, response = _response("Write to jane.doe@example.com for access.", canary)
    redacted = guard_output(task, response)
    choice = redacted.wire["choices"][0]
    assert "jane.doe@example.com" not in choice["message"]["content"] and choice["logprobs"] is None
