"""ProviderEgress=none through the gateway, with the official `openai` SDK over HTTP: an alias with a Bedrock
deployment is answered by it without a connect to OpenAI; a model with only internet deployments fails at
once as a 503 `provider_egress_required` naming the missing egress (before admission: nothing reserved or
billed), and GET /v1/models leaves it out."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import openai
import pytest

from stratus.config import Settings, load_settings
from stratus_tools.local.server import GatewayServer
from tests.integration.gateway_support import tenant_with_key
from tests.support.upstreams import BedrockUpstream, OpenAIUpstream


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[OpenAIUpstream, BedrockUpstream]]:
    with pytest.MonkeyPatch.context() as mp, OpenAIUpstream() as oai, BedrockUpstream() as bedrock:
        # botocore signs every request; the loopback server does not check the signature.
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.delenv("AWS_PROFILE", raising=False)
        yield oai, bedrock


@pytest.fixture(scope="module")
def settings(pg_url: str, upstreams: tuple[OpenAIUpstream, BedrockUpstream],
             tmp_path_factory: pytest.TempPathFactory) -> Settings:
    oai, bedrock = upstreams
    price = {"input": 1.0, "output": 2.0}
    catalog = {"default_alias": "fast",
               "deployments": {
                   "loop-openai": {"provider": "openai", "model": "gpt-loop", "base_url": oai.base_url,
                                   "timeout_s": 2, "price": price},
                   "loop-bedrock": {"provider": "bedrock", "model": "amazon.nova-test-v1:0", "region": "us-east-1",
                                    "base_url": bedrock.base_url, "timeout_s": 2, "price": price}},
               "aliases": {"fast": ["loop-openai", "loop-bedrock"], "hosted": ["loop-openai"]}}
    path = tmp_path_factory.mktemp("catalog") / "models.yaml"
    path.write_text(json.dumps(catalog))  # JSON is YAML
    return load_settings(database_url=pg_url, models_file=str(path), openai_api_key="sk-loop", provider_mode="hosted",
                         provider_egress="none", cache_enabled=False, retry_attempts=0)


@pytest.fixture
def clean(upstreams: tuple[OpenAIUpstream, BedrockUpstream]) -> tuple[OpenAIUpstream, BedrockUpstream]:
    for up in upstreams:
        up.clear()
    return upstreams


def sdk(server: GatewayServer, key: str, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, **kw)  # type: ignore[arg-type]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_the_alias_is_answered_by_bedrock_and_openai_is_never_called(
        server: GatewayServer, clean: tuple[OpenAIUpstream, BedrockUpstream], pg_url: str) -> None:
    oai, bedrock = clean
    _, key = tenant_with_key(pg_url, "egress")
    done = sdk(server, key, max_retries=0).chat.completions.create(model="fast", messages=ask("what is pgvector"))
    assert done.choices[0].message.content
    assert oai.requests == [] and len(bedrock.requests) == 1


def test_a_model_with_only_internet_deployments_fails_fast_with_a_503_naming_the_egress(
        server: GatewayServer, clean: tuple[OpenAIUpstream, BedrockUpstream], pg_url: str) -> None:
    oai, bedrock = clean
    _, key = tenant_with_key(pg_url, "egress")
    client = sdk(server, key)  # the SDK's default retries: the response tells it not to
    started = time.perf_counter()
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="hosted", messages=ask("hi"))
    elapsed = time.perf_counter() - started

    err = caught.value
    assert err.status_code == 503 and err.code == "provider_egress_required" and err.param == "model"
    assert err.type == "api_error"
    assert "ProviderEgress=none" in err.message and "ProviderEgress=nat" in err.message
    assert err.response.headers["x-should-retry"] == "false"
    assert oai.requests == [] and bedrock.requests == []
    assert elapsed < 1.5  # no connect waited on, no SDK retry (a retry backs off 0.5 s or more)

    with pytest.raises(openai.InternalServerError) as streamed:  # a stream fails the same way, before any event
        client.chat.completions.create(model="rag/hosted", messages=ask("hi"), stream=True)
    assert streamed.value.code == "provider_egress_required"


def test_models_lists_only_what_can_be_served(server: GatewayServer, pg_url: str) -> None:
    _, key = tenant_with_key(pg_url, "egress")
    client = sdk(server, key, max_retries=0)
    ids = {m.id for m in client.models.list()}
    assert {"fast", "rag/fast", "loop-bedrock"} <= ids
    assert not {"hosted", "rag/hosted", "loop-openai"} & ids
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("hosted")
