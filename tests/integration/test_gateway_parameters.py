"""Every chat-completions parameter through the gateway, for every provider, generated from the one table
(stratus.llm.parameters): the official `openai` SDK sends it, and the provider's loopback upstream (its
real wire protocol, recording what it receives) must have got it as is, translated as the table says, or
the client a 400 naming it and the upstream nothing. Then the response fields an OpenAI-compatible
upstream sends must reach the client unchanged, and a mixed alias must route a parameter to the
deployment that honours it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from stratus.config import Settings
from stratus.llm import parameters as table
from stratus_tools.local.server import GatewayServer
from tests.integration.gateway_support import (
    aws_test_credentials,
    provider_settings,
    start_provider_upstreams,
    tenant_with_key,
)
from tests.support.upstreams import Upstream

# One deployment each; Claude on Bedrock, whose thinking translation is tested here.
MODELS = {"openai": "gpt-loop", "anthropic": "claude-loop", "bedrock": "anthropic.claude-loop-v1:0"}
TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a thing up",
                                         "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}

# What the client sends for each parameter (the parameter itself, and what it needs beside it); a value
# that is not inert, so a provider that cannot honour it must refuse it.
SAMPLES: dict[str, dict[str, Any]] = {
    "max_completion_tokens": {"max_completion_tokens": 40},
    "max_tokens": {"max_tokens": 40},
    "temperature": {"temperature": 0.3},
    "top_p": {"top_p": 0.5},
    "stop": {"stop": ["END"]},
    "seed": {"seed": 7},
    "tools": {"tools": [TOOL]},
    "tool_choice": {"tools": [TOOL], "tool_choice": "required"},
    "parallel_tool_calls": {"tools": [TOOL], "parallel_tool_calls": False},
    "response_format": {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}},
    "user": {"user": "user-1"},
    "safety_identifier": {"safety_identifier": "sid-1"},
    "reasoning_effort": {"reasoning_effort": "low", "max_completion_tokens": 4000},
    "service_tier": {"service_tier": "default"},
    "n": {"n": 2},
    "logprobs": {"logprobs": True},
    "top_logprobs": {"top_logprobs": 2},
    "presence_penalty": {"presence_penalty": 0.5},
    "frequency_penalty": {"frequency_penalty": 0.5},
    "logit_bias": {"logit_bias": {"50256": -100}},
    "store": {"store": True},
    "metadata": {"metadata": {"team": "search"}},
    "prediction": {"prediction": {"type": "content", "content": "Echo"}},
    "modalities": {"modalities": ["text", "audio"]},
    "audio": {"audio": {"voice": "alloy", "format": "wav"}},
    "verbosity": {"verbosity": "low"},
    "prompt_cache_key": {"prompt_cache_key": "tenant-a"},
    "prompt_cache_retention": {"prompt_cache_retention": "24h"},
    "prompt_cache_options": {"prompt_cache_options": {"mode": "explicit", "ttl": "30m"}},
    "moderation": {"moderation": {"model": "omni-moderation-latest"}},
    "web_search_options": {"web_search_options": {"search_context_size": "low"}},
    "functions": {"functions": [TOOL["function"]]},
    "function_call": {"function_call": "auto"},
}
Extract = Callable[[dict[str, Any]], Any]
# Where each translation lands in the provider's request body, and the value it must have there.
TRANSLATED: dict[tuple[str, str], tuple[Extract, Any]] = {
    ("max_tokens", "openai"): (lambda b: b["max_completion_tokens"], 40),
    ("max_completion_tokens", "anthropic"): (lambda b: b["max_tokens"], 40),
    ("max_tokens", "anthropic"): (lambda b: b["max_tokens"], 40),
    ("max_completion_tokens", "bedrock"): (lambda b: b["inferenceConfig"]["maxTokens"], 40),
    ("max_tokens", "bedrock"): (lambda b: b["inferenceConfig"]["maxTokens"], 40),
    ("temperature", "bedrock"): (lambda b: b["inferenceConfig"]["temperature"], 0.3),
    ("top_p", "bedrock"): (lambda b: b["inferenceConfig"]["topP"], 0.5),
    ("stop", "anthropic"): (lambda b: b["stop_sequences"], ["END"]),
    ("stop", "bedrock"): (lambda b: b["inferenceConfig"]["stopSequences"], ["END"]),
    ("tools", "anthropic"): (lambda b: [t["name"] for t in b["tools"]], ["lookup"]),
    ("tools", "bedrock"): (lambda b: [t["toolSpec"]["name"] for t in b["toolConfig"]["tools"]], ["lookup"]),
    ("tool_choice", "anthropic"): (lambda b: b["tool_choice"], {"type": "any"}),
    ("tool_choice", "bedrock"): (lambda b: b["toolConfig"]["toolChoice"], {"any": {}}),
    ("parallel_tool_calls", "anthropic"): (lambda b: b["tool_choice"],
                                           {"type": "auto", "disable_parallel_tool_use": True}),
    ("response_format", "anthropic"): (lambda b: b["output_config"], {"format": {"type": "json_schema",
                                                                                  "schema": SCHEMA}}),
    ("user", "anthropic"): (lambda b: b["metadata"], {"user_id": "user-1"}),
    ("safety_identifier", "anthropic"): (lambda b: b["metadata"], {"user_id": "sid-1"}),
    ("reasoning_effort", "anthropic"): (lambda b: b["thinking"], {"type": "enabled", "budget_tokens": 2048}),
    ("reasoning_effort", "bedrock"): (lambda b: b["additionalModelRequestFields"]["thinking"],
                                      {"type": "enabled", "budget_tokens": 2048}),
    ("service_tier", "anthropic"): (lambda b: b["service_tier"], "standard_only"),
}
UNKNOWN = {"top_k": 5}  # no OpenAI parameter: what a client sends through the SDK's extra_body


EVERY_REQUEST = {"messages"}  # its translation is each adapter's own test (tests/integration/test_provider_*.py)


def _cases() -> list[Any]:
    cases = []
    for parameter in table.PARAMETERS:
        if parameter.name in EVERY_REQUEST:
            continue
        for provider in table.PROVIDERS:
            rule = parameter.rule(provider)
            if rule.handling != "gateway":
                cases.append(pytest.param(parameter.name, provider, rule.handling, id=f"{provider}-{parameter.name}"))
    return cases


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    yield from start_provider_upstreams()


@pytest.fixture(scope="module")
def settings(pg_url: str, upstreams: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return provider_settings(pg_url, upstreams, tmp_path_factory, MODELS,
                             prefix="params", timeout_s=5, max_output_tokens=8000,
                             aliases={"mixed": ["params-anthropic", "params-openai"]})


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_test_credentials(monkeypatch)


@pytest.fixture(scope="module")
def key(pg_url: str) -> str:
    return tenant_with_key(pg_url, "params")[1]


@pytest.fixture
def client(server: GatewayServer, key: str, upstreams: dict[str, Upstream]) -> openai.OpenAI:
    for up in upstreams.values():
        up.clear()
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


MESSAGES = [{"role": "user", "content": "How are API keys rotated?"}]


def test_every_parameter_of_the_table_has_a_sample() -> None:
    sent = {p.name for p in table.PARAMETERS if any(p.rule(x).handling != "gateway" for x in table.PROVIDERS)}
    assert sent - EVERY_REQUEST == set(SAMPLES)


@pytest.mark.parametrize(("name", "provider", "handling"), _cases())
def test_each_parameter_is_forwarded_translated_or_refused_as_the_table_says(
        client: openai.OpenAI, upstreams: dict[str, Upstream], name: str, provider: str, handling: str) -> None:
    up = upstreams[provider]
    sample = SAMPLES[name]
    if handling == "refuse":
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=f"via-{provider}", messages=MESSAGES, **sample)
        assert caught.value.code == "unsupported_parameter" and caught.value.param == name, caught.value.body
        assert up.requests == []  # refused before admission: the provider never saw it
        return
    client.chat.completions.create(model=f"via-{provider}", messages=MESSAGES, **sample)
    assert len(up.requests) == 1
    body = up.requests[0].body
    if handling == "forward":
        assert body[name] == sample[name]
    else:
        extract, expected = TRANSLATED[(name, provider)]
        assert extract(body) == expected


@pytest.mark.parametrize("provider", table.PROVIDERS)
def test_unknown_names_reach_openai_compatible_upstreams_and_are_refused_elsewhere(
        client: openai.OpenAI, upstreams: dict[str, Upstream], provider: str) -> None:
    for stream in (False, True):
        for up in upstreams.values():
            up.clear()
        call = {"model": f"via-{provider}", "messages": MESSAGES, "stream": stream,
                "extra_body": UNKNOWN | {"stratus": {"cache": False}}}
        if provider != "openai":
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(**call)
            assert caught.value.param == "top_k" and upstreams[provider].requests == []
            continue
        result = client.chat.completions.create(**call)
        if stream:
            list(result)
        body = upstreams["openai"].requests[0].body
        assert body["top_k"] == 5 and "stratus" not in body  # Stratus's own options are never forwarded


def test_a_mixed_alias_routes_a_parameter_to_the_deployment_that_honours_it(
        client: openai.OpenAI, upstreams: dict[str, Upstream]) -> None:
    client.chat.completions.create(model="mixed", messages=MESSAGES, seed=7)
    assert upstreams["anthropic"].requests == [] and upstreams["openai"].requests[0].body["seed"] == 7
    client.chat.completions.create(model="mixed", messages=MESSAGES)
    assert len(upstreams["anthropic"].requests) == 1  # without it, the alias's first deployment answers


def test_openai_response_fields_pass_through_unchanged(client: openai.OpenAI) -> None:
    result = client.chat.completions.create(model="via-openai", messages=MESSAGES, logprobs=True, top_logprobs=1)
    assert result.system_fingerprint == "fp_loopback" and result.service_tier == "default"
    assert result.usage is not None and result.usage.completion_tokens_details is not None
    assert result.usage.completion_tokens_details.reasoning_tokens == 0
    assert result.usage.prompt_tokens_details is not None and result.usage.prompt_tokens_details.audio_tokens == 0
    choice = result.choices[0]
    assert choice.message.refusal is None and choice.message.annotations == []
    assert choice.logprobs is not None and choice.logprobs.content is not None
    tokens = "".join(t.token for t in choice.logprobs.content)
    assert tokens == choice.message.content and len(choice.logprobs.content[0].top_logprobs) == 1
    several = client.chat.completions.create(model="via-openai", messages=MESSAGES, n=3, logprobs=True)
    assert [c.index for c in several.choices] == [0, 1, 2]
    assert {c.message.content for c in several.choices} == {choice.message.content}
    assert all(c.logprobs is not None for c in several.choices)
    other = client.chat.completions.create(model="via-anthropic", messages=MESSAGES)
    assert other.system_fingerprint is None and other.choices[0].logprobs is None  # null where none was sent


def test_openai_response_fields_pass_through_a_stream(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="via-openai", messages=MESSAGES, stream=True,
                                                 stream_options={"include_usage": True}))
    assert {c.system_fingerprint for c in chunks} == {"fp_loopback"} and {c.service_tier for c in chunks} == {"default"}
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content == ""  # a text stream opens with content ""


def test_a_streamed_tool_call_opens_with_content_null(server: GatewayServer, key: str) -> None:
    body = {"model": "via-openai", "stream": True, "tools": [TOOL],
            "messages": [{"role": "user", "content": "Please lookup the rotation policy"}]}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {key}"}, timeout=10) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: {")]
    first = json.loads(lines[0])["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    assert any("tool_calls" in json.loads(x)["choices"][0]["delta"] for x in lines[1:] if json.loads(x)["choices"])
