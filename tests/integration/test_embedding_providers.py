"""The hosted embedding adapters driving boto3 (bedrock-runtime InvokeModel: Titan v2, Cohere Embed v3) and
the official openai SDK (embeddings.create) against loopback servers that speak each wire protocol:
dimensions, input types, batching within each API's limits, throttling with retry-after, 5xx, bad
credentials, and a batch in which one text is refused."""

from __future__ import annotations

import numpy as np
import pytest

from stratus import provider_errors as e
from stratus.aws.bedrock import reset_clients
from stratus.config import load_settings
from stratus.embeddings import embed_metered, get_embedder, hosted_embedder
from stratus.embeddings.hosted import HostedEmbedder
from tests.support.upstreams import BedrockEmbedUpstream, Fault, OpenAIEmbeddingsUpstream
from tests.support.upstreams.embeddings import fake_vector

pytestmark = pytest.mark.integration
KEY = "sk-test-embeddings"
TEXTS = ["pgvector stores vectors", "hnsw is a graph index", "the tenant filter runs first"]


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    reset_clients()


@pytest.fixture(scope="module")
def bedrock():
    with BedrockEmbedUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def openai_up():
    with OpenAIEmbeddingsUpstream(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(bedrock: BedrockEmbedUpstream, openai_up: OpenAIEmbeddingsUpstream):
    bedrock.clear()
    openai_up.clear()
    yield


def _embedder(model: str, bedrock: BedrockEmbedUpstream, openai_up: OpenAIEmbeddingsUpstream, *, key: str = KEY,
              sleeps: list[float] | None = None, **overrides: object) -> HostedEmbedder:
    settings = load_settings(**{"bedrock_endpoint_url": bedrock.base_url, "embedding_region": "us-west-2",
                                "openai_base_url": openai_up.base_url, "openai_api_key": key,
                                "retry_base_backoff_s": 0.01, "embedding_timeout_s": 2.0, **overrides})
    embedder = hosted_embedder(model, settings)
    assert isinstance(embedder, HostedEmbedder)
    embedder._sleep = (sleeps.append if sleeps is not None else lambda _s: None)
    return embedder


def _expected(texts: list[str], dims: int, salt: str = "") -> np.ndarray:
    v = np.asarray([fake_vector(t, dims, salt=salt) for t in texts], dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("dims", [256, 512, 1024])
def test_titan_v2_embeds_each_text_at_the_dimension_its_id_names(bedrock, openai_up, dims) -> None:
    embedder = _embedder(f"amazon.titan-embed-text-v2:0/{dims}", bedrock, openai_up)
    result = embed_metered(embedder, TEXTS)
    assert embedder.model_name == f"amazon.titan-embed-text-v2:0/{dims}" and embedder.dimensions == dims
    assert result.vectors.shape == (3, dims) and not result.failures
    np.testing.assert_allclose(result.vectors, _expected(TEXTS, dims), atol=1e-5)
    assert result.input_tokens == sum(len(t.split()) for t in TEXTS)  # the provider's count
    sent = [r.body for r in bedrock.requests]
    assert [r.path for r in bedrock.requests] == ["/model/amazon.titan-embed-text-v2%3A0/invoke"] * 3
    assert sorted(b["inputText"] for b in sent) == sorted(TEXTS)
    assert all(b["dimensions"] == dims and b["normalize"] is True for b in sent)


def test_cohere_sends_documents_and_queries_with_their_input_types_in_batches_of_96(bedrock, openai_up) -> None:
    embedder = _embedder("cohere.embed-english-v3", bedrock, openai_up, embedding_concurrency=1)
    texts = [f"passage number {i}" for i in range(200)]
    docs = embedder.embed(texts)
    assert [len(r.body["texts"]) for r in bedrock.requests] == [96, 96, 8]
    assert {r.body["input_type"] for r in bedrock.requests} == {"search_document"}
    assert {r.body["truncate"] for r in bedrock.requests} == {"NONE"}
    np.testing.assert_allclose(docs, _expected(texts, 1024, "search_document"), atol=1e-5)
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0)  # Cohere's vectors are scaled to unit length
    bedrock.clear()
    query = embedder.embed(["passage number 3"], kind="query")
    assert bedrock.requests[0].body["input_type"] == "search_query"
    np.testing.assert_allclose(query, _expected(["passage number 3"], 1024, "search_query"), atol=1e-5)
    assert get_embedder("cohere.embed-english-v3").model_name == "cohere.embed-english-v3/1024"


@pytest.mark.parametrize("model, dims", [("text-embedding-3-small/512", 512), ("text-embedding-3-large", 3072)])
def test_openai_sends_dimensions_and_decodes_base64(bedrock, openai_up, model, dims) -> None:
    embedder = _embedder(model, bedrock, openai_up)
    result = embed_metered(embedder, TEXTS, kind="query")
    np.testing.assert_allclose(result.vectors, _expected(TEXTS, dims), atol=1e-5)
    (request,) = openai_up.requests
    assert request.body["dimensions"] == dims and request.body["input"] == TEXTS
    assert request.body.get("encoding_format", "base64") == "base64"  # the SDK's default, decoded by it
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert result.input_tokens == sum(len(t.split()) for t in TEXTS)


def test_openai_float_encoding_is_served_too(openai_up) -> None:
    import openai

    client = openai.OpenAI(api_key=KEY, base_url=openai_up.base_url, max_retries=0)
    out = client.embeddings.create(model="text-embedding-3-small", input=["a b"], dimensions=8,
                                   encoding_format="float")
    assert out.data[0].embedding == pytest.approx(fake_vector("a b", 8), abs=1e-6)
    assert out.usage.prompt_tokens == 2


def test_openai_batches_stay_within_the_per_request_token_limit(bedrock, openai_up) -> None:
    embedder = _embedder("text-embedding-3-small/64", bedrock, openai_up, embedding_concurrency=1)
    big = "word " * 8000  # ~8,000 local tokens each: 300k per request allows 37, the 75% margin 28
    vectors = embedder.embed([big] * 40)
    sizes = [len(r.body["input"]) for r in openai_up.requests]
    assert sum(sizes) == 40 and len(sizes) == 2 and max(sizes) <= 28
    assert vectors.shape == (40, 64)


@pytest.mark.parametrize("model", ["amazon.titan-embed-text-v2:0/256", "text-embedding-3-small/256"])
def test_a_429_is_retried_after_the_providers_retry_after(bedrock, openai_up, model) -> None:
    up = openai_up if model.startswith("text-") else bedrock
    sleeps: list[float] = []
    embedder = _embedder(model, bedrock, openai_up, sleeps=sleeps)
    up.inject(Fault.status(429, retry_after=2))
    assert embedder.embed(["one text"]).shape == (1, 256)
    assert sleeps == [2.0] and len(up.requests) == 2


@pytest.mark.parametrize("model", ["amazon.titan-embed-text-v2:0/256", "text-embedding-3-small/256"])
def test_throttled_every_time_is_a_rate_limit_with_retry_after(bedrock, openai_up, model) -> None:
    up = openai_up if model.startswith("text-") else bedrock
    embedder = _embedder(model, bedrock, openai_up, retry_attempts=2)
    up.inject(*[Fault.status(429, retry_after=3)] * 3)
    with pytest.raises(e.RateLimited) as err:
        embedder.embed(["one text"])
    assert err.value.retry_after == 3 and len(up.requests) == 3


@pytest.mark.parametrize("model", ["cohere.embed-multilingual-v3", "text-embedding-3-small/256"])
def test_5xx_and_dropped_connections_are_retried_then_become_overloaded(bedrock, openai_up, model) -> None:
    up = openai_up if model.startswith("text-") else bedrock
    sleeps: list[float] = []
    embedder = _embedder(model, bedrock, openai_up, sleeps=sleeps, retry_attempts=2)
    up.inject(Fault.status(500), Fault.reset())
    assert embedder.embed(["recovers"]).shape[0] == 1 and len(sleeps) == 2
    up.clear()
    up.inject(Fault.status(500), Fault.status(503), Fault.status(502))
    with pytest.raises(e.Overloaded) as err:
        embedder.embed(["never recovers"])
    assert err.value.retry_after is not None and len(up.requests) == 3


def test_repeated_provider_failures_open_the_models_circuit(bedrock, openai_up) -> None:
    """As for chat deployments: after breaker_failures provider-side failures the model is skipped for the
    cooldown (CircuitOpen, 503 with what is left of it) without another call; a refused text never counts."""
    embedder = _embedder("amazon.titan-embed-text-v2:0/256", bedrock, openai_up, retry_attempts=1,
                         breaker_failures=3, breaker_cooldown_s=60)
    bedrock.inject(Fault.status(500), Fault.status(500))
    with pytest.raises(e.Overloaded):
        embedder.embed(["first outage"])  # two failures: still closed
    bedrock.inject(Fault.status(500), Fault.status(500))
    with pytest.raises(e.CircuitOpen) as skipped:
        embedder.embed(["second outage"])  # the third failure opens it; the retry is skipped
    calls = len(bedrock.requests)
    with pytest.raises(e.CircuitOpen):
        embedder.embed(["during the cooldown"])
    assert len(bedrock.requests) == calls == 3 and 55 < (skipped.value.retry_after or 0) <= 60
    bedrock.clear()  # the fault the skipped retry did not consume
    fresh = _embedder("amazon.titan-embed-text-v2:0/256", bedrock, openai_up, breaker_failures=1)
    assert fresh.embed_all(["x" * 60_000]).failures  # a text the model refuses: the circuit stays closed
    assert fresh.embed(["fine"]).shape == (1, 256)


def test_a_timeout_is_retried_then_overloaded(bedrock, openai_up) -> None:
    embedder = _embedder("text-embedding-3-small/16", bedrock, openai_up, retry_attempts=1,
                         embedding_timeout_s=0.3)
    openai_up.inject(Fault.delay(1.0), Fault.delay(1.0))
    with pytest.raises(e.Overloaded, match="timed out"):
        embedder.embed(["slow"])


@pytest.mark.parametrize("model", ["amazon.titan-embed-text-v2:0/512", "cohere.embed-english-v3"])
def test_bad_aws_credentials_are_authentication_failed_and_not_retried(bedrock, openai_up, model) -> None:
    embedder = _embedder(model, bedrock, openai_up)
    bedrock.inject(Fault.auth())
    with pytest.raises(e.AuthenticationFailed):
        embedder.embed(["x"])
    assert len(bedrock.requests) == 1


def test_a_wrong_openai_key_is_authentication_failed(bedrock, openai_up) -> None:
    embedder = _embedder("text-embedding-3-small", bedrock, openai_up, key="sk-wrong")
    with pytest.raises(e.AuthenticationFailed):
        embedder.embed(["x"])
    assert len(openai_up.requests) == 1


def test_no_openai_key_names_the_setting(bedrock, openai_up, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("STRATUS_OPENAI_API_KEY", raising=False)
    settings = load_settings(openai_base_url=openai_up.base_url, openai_api_key=None)
    with pytest.raises(e.AuthenticationFailed, match="STRATUS_OPENAI_API_KEY"):
        hosted_embedder("text-embedding-3-small", settings)


def test_one_text_too_long_fails_alone_and_the_rest_of_the_batch_is_kept(bedrock, openai_up) -> None:
    embedder = _embedder("cohere.embed-english-v3", bedrock, openai_up, embedding_concurrency=1)
    texts = [f"short text {i}" for i in range(10)]
    texts[6] = "a " * 600  # 1,200 characters (under the 2,048 limit) but 600 tokens: over Cohere's 512
    texts[8] = "x" * 3000  # over the documented character limit: refused before any call
    result = embed_metered(embedder, texts)
    assert set(result.failures) == {6, 8}
    assert isinstance(result.failures[6], e.InvalidRequest) and "too long" in result.failures[6].message
    assert "3000 characters" in result.failures[8].message
    keep = [i for i in range(10) if i not in (6, 8)]
    np.testing.assert_allclose(result.vectors[keep], _expected([texts[i] for i in keep], 1024, "search_document"),
                               atol=1e-5)
    assert not result.vectors[6].any() and not result.vectors[8].any()
    assert all("x" * 3000 not in r.body["texts"] for r in bedrock.requests)
    assert len(bedrock.requests) <= 1 + 2 * 4  # the refused call, then halves down to the culprit
    with pytest.raises(e.InvalidRequest, match=r"input\.6") as err:
        embedder.embed(texts)
    assert err.value.field == "input"


def test_an_empty_text_fails_alone_at_openai(bedrock, openai_up) -> None:
    embedder = _embedder("text-embedding-3-small/32", bedrock, openai_up)
    result = embed_metered(embedder, ["fine", "", "also fine"])
    assert set(result.failures) == {1} and result.vectors[[0, 2]].any(axis=1).all()


def test_a_malformed_answer_is_retried(bedrock, openai_up) -> None:
    embedder = _embedder("amazon.titan-embed-text-v2:0/256", bedrock, openai_up)
    bedrock.inject(Fault.malformed())
    assert embedder.embed(["fine"]).shape == (1, 256) and len(bedrock.requests) == 2
