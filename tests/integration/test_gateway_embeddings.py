"""POST /v1/embeddings serving hosted models (OpenAI text-embedding-3 and Bedrock Titan/Cohere at their
loopback servers) through the official openai SDK: `dimensions` honoured or refused naming the field, the
provider's token count in usage, its cost in the trace and the tenant's spend, provider failures mapped
to the API's errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from stratus.aws.bedrock import reset_clients
from stratus.config import Settings, load_settings
from stratus.db.connection import connect
from stratus_tools.local.server import GatewayServer
from tests.integration.gateway_support import fresh_rate_window, tenant_with_key
from tests.support.upstreams import BedrockEmbedUpstream, Fault, OpenAIEmbeddingsUpstream
from tests.support.upstreams.embeddings import fake_vector

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def oai() -> Iterator[OpenAIEmbeddingsUpstream]:
    with OpenAIEmbeddingsUpstream(api_key="sk-loop") as up:
        yield up


@pytest.fixture(scope="module")
def bedrock() -> Iterator[BedrockEmbedUpstream]:
    with BedrockEmbedUpstream() as up:
        yield up


@pytest.fixture(autouse=True)
def _clean(oai, bedrock, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    reset_clients()
    oai.clear()
    bedrock.clear()
    yield


@pytest.fixture(scope="module")
def settings(pg_url: str, oai: OpenAIEmbeddingsUpstream, bedrock: BedrockEmbedUpstream) -> Settings:
    return load_settings(database_url=pg_url, openai_api_key="sk-loop", openai_base_url=oai.base_url,
                         bedrock_enabled=True, bedrock_endpoint_url=bedrock.base_url, cache_enabled=False,
                         retry_attempts=1, retry_base_backoff_s=0.01, retry_max_backoff_s=0.05)


@pytest.fixture
def tenant(pg_url: str) -> tuple[str, str]:
    return tenant_with_key(pg_url, "emb")


def _sdk(server: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def _spend(pg_url: str, tenant_id: str) -> tuple[float, int]:
    with connect(pg_url, app_role=False) as owner:
        row = owner.execute("SELECT coalesce(sum(spent_usd), 0), coalesce(sum(tokens), 0) FROM budget_usage"
                            " WHERE tenant_id = %s", [tenant_id]).fetchone()
    assert row is not None
    return float(row[0]), int(row[1])


def _wait_spend(pg_url: str, tenant_id: str, tokens: int) -> tuple[float, int]:
    deadline = time.monotonic() + 10
    while (got := _spend(pg_url, tenant_id))[1] < tokens and time.monotonic() < deadline:
        time.sleep(0.1)  # the reservation settles after the response (a background task)
    return got


def test_openai_model_with_dimensions_is_billed_at_the_providers_count(server, tenant, pg_url, oai) -> None:
    tenant_id, key = tenant
    texts = ["refund policy for damaged goods", "shipping times to Europe"]
    out = _sdk(server, key).embeddings.create(model="text-embedding-3-small", input=texts, dimensions=256)
    assert [len(d.embedding) for d in out.data] == [256, 256]
    np.testing.assert_allclose(out.data[0].embedding, fake_vector(texts[0], 256), atol=1e-5)
    assert oai.requests[0].body["dimensions"] == 256
    billed = sum(len(t.split()) for t in texts)  # the loopback counts words: what the provider said, not ours
    assert out.usage.prompt_tokens == billed and out.model == "text-embedding-3-small"
    spent, tokens = _wait_spend(pg_url, tenant_id, billed)
    assert tokens == billed and spent == pytest.approx(billed * 0.02 / 1e6, abs=1e-6)


def test_the_models_list_names_the_hosted_models_the_deployment_can_call(server, tenant) -> None:
    ids = {m.id for m in _sdk(server, tenant[1]).models.list()}
    assert {"all-MiniLM-L6-v2", "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
            "amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"} <= ids


@pytest.mark.parametrize("model, dims, expected", [
    ("amazon.titan-embed-text-v2:0", 512, 512), ("amazon.titan-embed-text-v2:0/256", None, 256),
    ("cohere.embed-multilingual-v3", None, 1024)])
def test_bedrock_models_are_served_at_their_dimensions(server, tenant, bedrock, model, dims, expected) -> None:
    kwargs = {"dimensions": dims} if dims else {}
    out = _sdk(server, tenant[1]).embeddings.create(model=model, input=["hnsw graphs"], **kwargs)
    assert len(out.data[0].embedding) == expected
    assert bedrock.requests and out.usage.prompt_tokens == 2


@pytest.mark.parametrize("model, dims", [("amazon.titan-embed-text-v2:0", 300), ("all-MiniLM-L6-v2", 128),
                                         ("text-embedding-3-small", 4096), ("text-embedding-3-small/512", 256)])
def test_a_dimension_the_model_does_not_offer_is_a_400_naming_dimensions(server, tenant, model, dims) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _sdk(server, tenant[1]).embeddings.create(model=model, input="x", dimensions=dims)
    assert caught.value.param == "dimensions"


def test_ada_002_is_served_at_its_one_size_without_sending_dimensions(server, tenant, oai) -> None:
    out = _sdk(server, tenant[1]).embeddings.create(model="text-embedding-ada-002", input="refund policy")
    assert len(out.data[0].embedding) == 1536 and out.model == "text-embedding-ada-002"
    assert "dimensions" not in oai.requests[0].body  # the API refuses it for this model
    with pytest.raises(openai.BadRequestError) as caught:
        _sdk(server, tenant[1]).embeddings.create(model="text-embedding-ada-002", input="x", dimensions=256)
    assert caught.value.param == "dimensions" and len(oai.requests) == 1


@pytest.mark.parametrize("ids", [[[1, 2, 3], [40, 50]], [7, 8, 9, 10]])
def test_token_arrays_reach_an_openai_model_as_sent(server, tenant, oai, ids) -> None:
    out = _sdk(server, tenant[1]).embeddings.create(model="text-embedding-3-small", input=ids, dimensions=64)
    arrays = ids if isinstance(ids[0], list) else [ids]
    assert oai.requests[0].body["input"] == arrays  # one array of ints is one input, as OpenAI reads it
    assert [d.index for d in out.data] == list(range(len(arrays)))
    np.testing.assert_allclose(out.data[-1].embedding, fake_vector(" ".join(map(str, arrays[-1])), 64), atol=1e-5)
    assert out.usage.prompt_tokens == sum(len(a) for a in arrays)


@pytest.mark.parametrize("model, ids", [("amazon.titan-embed-text-v2:0", [[1, 2]]), ("all-MiniLM-L6-v2", [1, 2]),
                                        ("text-embedding-3-small", [[1, 2], []])])
def test_token_arrays_a_model_cannot_read_are_a_400_naming_input(server, tenant, oai, bedrock, model, ids) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _sdk(server, tenant[1]).embeddings.create(model=model, input=ids)
    assert caught.value.param == "input" and not oai.requests and not bedrock.requests


def test_a_text_the_provider_refuses_is_a_400_naming_input(server, tenant, bedrock) -> None:
    texts = ["fine", "a " * 600, "also fine"]  # 600 tokens: over Cohere's 512
    with pytest.raises(openai.BadRequestError) as caught:
        _sdk(server, tenant[1]).embeddings.create(model="cohere.embed-english-v3", input=texts)
    assert caught.value.param == "input" and "input.1" in caught.value.message


def test_provider_throttling_is_a_429_with_retry_after(server, tenant, oai) -> None:
    fresh_rate_window()
    oai.inject(*[Fault.status(429, retry_after=7)] * 2)
    with pytest.raises(openai.RateLimitError) as caught:
        _sdk(server, tenant[1]).embeddings.create(model="text-embedding-3-small", input="x")
    assert caught.value.code == "provider_rate_limited"
    assert caught.value.response.headers["retry-after"] == "7"


def test_a_provider_outage_is_a_503_with_retry_after(server, tenant, bedrock) -> None:
    bedrock.inject(Fault.status(500), Fault.status(503))
    with pytest.raises(openai.InternalServerError) as caught:
        _sdk(server, tenant[1]).embeddings.create(model="amazon.titan-embed-text-v2:0", input="x")
    assert caught.value.status_code == 503 and "retry-after" in caught.value.response.headers


def test_rejected_credentials_are_the_operators_problem(server, tenant, bedrock) -> None:
    bedrock.inject(Fault.auth())
    with pytest.raises(openai.APIStatusError) as caught:
        _sdk(server, tenant[1]).embeddings.create(model="cohere.embed-english-v3", input="x")
    assert caught.value.status_code == 502 and caught.value.code == "authentication_failed"
