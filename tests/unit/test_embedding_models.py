"""Hosted embedding models without a network: ids and dimensions, prices, pacing, and the shared batching,
retry and per-text failure logic of stratus.embeddings.hosted driven by an in-process `call`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from stratus import provider_errors as e
from stratus.config import ConfigError, load_settings
from stratus.embeddings import get_embedder, known_models
from stratus.embeddings.hosted import HostedEmbedder, Pacer
from stratus.embeddings.models import HOSTED, UnknownModel, canonical_id, parse_model_id
from stratus.llm.pricing import embedding_cost_usd

pytestmark = pytest.mark.unit
MODELS_YAML = Path(__file__).resolve().parents[2] / "shared" / "stratus" / "llm" / "models.yaml"


def test_ids_name_model_and_dimension() -> None:
    assert canonical_id("amazon.titan-embed-text-v2:0") == "amazon.titan-embed-text-v2:0/1024"
    assert parse_model_id("text-embedding-3-small/512")[1] == 512
    assert canonical_id("cohere.embed-english-v3") == "cohere.embed-english-v3/1024"
    for bad in ("amazon.titan-embed-text-v2:0/300", "cohere.embed-english-v3/512", "text-embedding-3-small/0",
                "text-embedding-3-large/3073", "text-embedding-3-small/x"):
        with pytest.raises(UnknownModel, match="offers"):
            parse_model_id(bad)
    with pytest.raises(ValueError, match="known: all-MiniLM-L6-v2-int8"):
        get_embedder("mystery-model/12")
    assert "text-embedding-3-large/3072" in known_models()


def test_every_hosted_model_has_a_published_price_beside_the_chat_prices() -> None:
    prices = yaml.safe_load(MODELS_YAML.read_text())["embedding_prices"]
    assert set(prices) == set(HOSTED)
    settings = load_settings(models_file=MODELS_YAML)
    assert embedding_cost_usd("text-embedding-3-large/256", 2_000_000, settings) == pytest.approx(0.26)
    assert embedding_cost_usd("all-MiniLM-L6-v2-int8", 10**9, settings) == 0.0


def test_a_hosted_model_id_without_its_dimension_is_refused_at_configuration() -> None:
    with pytest.raises(ConfigError, match="STRATUS_EMBEDDING_MODEL"):
        load_settings(embedding_model="amazon.titan-embed-text-v2:0")
    assert load_settings(embedding_model="amazon.titan-embed-text-v2:0/256").embedding_model.endswith("/256")


def test_the_pacer_spaces_calls() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)

    pacer = Pacer(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        pacer.wait()
    assert slept == [0.25, 0.5]
    Pacer(None, sleep=sleep).wait()
    assert len(slept) == 2


class FakeApi:
    """A provider call: vectors from the text length; texts containing 'BAD' make the whole call a 400."""

    def __init__(self, dims: int, faults: list[e.ProviderError] | None = None) -> None:
        self.dims, self.faults, self.calls = dims, list(faults or []), []

    def __call__(self, texts: list[str], kind: str) -> tuple[np.ndarray, int | None]:
        self.calls.append(list(texts))
        if self.faults:
            raise self.faults.pop(0)
        if any(isinstance(t, str) and "BAD" in t for t in texts):
            raise e.InvalidRequest("a text is too long", status=400)
        rows = np.ones((len(texts), self.dims), dtype=np.float32) * np.arange(1, len(texts) + 1)[:, None]
        return rows, 3 * len(texts)


def _embedder(model: str, api: FakeApi, sleeps: list[float] | None = None, **kw) -> HostedEmbedder:
    out = HostedEmbedder(model, api, sleep=(sleeps.append if sleeps is not None else lambda _s: None),
                         jitter=lambda: 0.5, concurrency=1, **kw)
    out.count_tokens = lambda text: len(text.split())  # type: ignore[method-assign]
    return out


def test_batches_respect_the_texts_per_call() -> None:
    api = FakeApi(1024)
    result = _embedder("cohere.embed-english-v3", api).embed_all([f"t{i}" for i in range(100)])
    assert [len(c) for c in api.calls] == [96, 4] and result.input_tokens == 300
    assert np.allclose(np.linalg.norm(result.vectors, axis=1), 1.0)


def test_token_arrays_go_to_models_that_take_them_and_are_batched_by_their_length() -> None:
    api = FakeApi(64)
    arrays = [[1] * 8000 for _ in range(30)]  # 28 fill 0.75 of OpenAI's 300,000 tokens per call
    result = _embedder("text-embedding-3-small/64", api).embed_all([*arrays, [], [2] * 8193])
    assert [len(c) for c in api.calls] == [28, 2] and api.calls[0][0] is arrays[0]
    assert set(result.failures) == {30, 31} and "empty token array" in result.failures[30].message
    assert "8193 tokens" in result.failures[31].message
    titan = FakeApi(256)
    refused = _embedder("amazon.titan-embed-text-v2:0/256", titan).embed_all([[1, 2], "text"])
    assert set(refused.failures) == {0} and "takes text" in refused.failures[0].message
    assert titan.calls == [["text"]]  # the token ids never reached a model that cannot read them


def test_refused_calls_are_split_until_each_bad_text_fails_alone() -> None:
    api = FakeApi(1024)
    texts = [f"t{i}" for i in range(16)]
    texts[3], texts[12] = "BAD one", "BAD two"
    result = _embedder("cohere.embed-english-v3", api).embed_all(texts)
    assert set(result.failures) == {3, 12}
    assert all(result.vectors[i].any() for i in range(16) if i not in (3, 12))
    assert len(api.calls) == 1 + 2 + 4 + 4 + 4  # halves down to single texts on the bad branches only
    assert result.input_tokens == 3 * 14


def test_retry_after_is_honoured_when_short_and_backoff_is_jittered_otherwise() -> None:
    sleeps: list[float] = []
    api = FakeApi(256, [e.RateLimited("slow down", status=429, retry_after=1.5),
                        e.ServerError("boom", status=500), e.RateLimited("later", status=429, retry_after=60)])
    embedder = _embedder("amazon.titan-embed-text-v2:0/256", api, sleeps, retries=3, base_backoff_s=0.2,
                         max_backoff_s=4.0)
    embedder.embed(["x"])
    assert sleeps == [1.5, 0.5 * 0.4, 0.5 * 0.8]  # retry-after; then half (jitter) of 0.2*2 and 0.2*4


def test_exhausted_retries_are_overloaded_except_rate_limits() -> None:
    api = FakeApi(256, [e.ServerError("boom", status=500)] * 3)
    with pytest.raises(e.Overloaded, match="after 3 attempts") as err:
        _embedder("amazon.titan-embed-text-v2:0/256", api, retries=2).embed(["x"])
    assert err.value.retry_after == 1.0
    api = FakeApi(256, [e.RateLimited("no", status=429, retry_after=9)] * 2)
    with pytest.raises(e.RateLimited):
        _embedder("amazon.titan-embed-text-v2:0/256", api, retries=1).embed(["x"])
    api = FakeApi(256, [e.AuthenticationFailed("who are you", status=403)])
    with pytest.raises(e.AuthenticationFailed):
        _embedder("amazon.titan-embed-text-v2:0/256", api, retries=5).embed(["x"])
    assert len(api.calls) == 1


def test_a_wrong_shaped_answer_is_malformed() -> None:
    class Short(FakeApi):
        def __call__(self, texts: list[str], kind: str) -> tuple[np.ndarray, int | None]:
            return np.ones((len(texts), 3), dtype=np.float32), None

    with pytest.raises(e.Overloaded, match="3 dimensions"):
        _embedder("amazon.titan-embed-text-v2:0/256", Short(256), retries=0).embed(["x"])
