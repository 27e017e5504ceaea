"""The Bedrock Rerank adapter driving boto3 (bedrock-agent-runtime Rerank) against a loopback server that
speaks its REST-JSON protocol, and retrieve() with a tenant's reranker on the real database."""

from __future__ import annotations

import time

import pytest

from stratus.aws.bedrock import reset_clients
from stratus.config import load_settings
from stratus.db import retrieval_settings
from stratus.db.connection import tenant_transaction
from stratus.llm import errors as e
from stratus.retrieval.bedrock_rerank import BedrockReranker
from stratus.retrieval.models import Hit, RetrieveRequest
from stratus.retrieval.rerank import reset_rerankers
from stratus.retrieval.service import retrieve
from tests.integration.test_retrieval import _store
from tests.support.upstreams import BedrockRerankUpstream, Fault

QUERY = "pgvector hnsw index"
TEXTS = ["cats and dogs", "an hnsw index in pgvector", "postgres has pgvector", "nothing relevant",
         "hnsw graphs"]


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore signs every request (SigV4); the loopback server checks the header's shape and scope.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="module")
def upstream():
    with BedrockRerankUpstream() as server:
        yield server


@pytest.fixture
def up(upstream: BedrockRerankUpstream):
    upstream.clear()
    upstream.page_size = None
    upstream.latency_s = 0.0
    yield upstream
    upstream.clear()


def _hits(texts: list[str]) -> list[Hit]:
    return [Hit(chunk_id=i, document_id="doc", source_key=f"s{i}", document_version=1, text=t, title=None,
                heading_path=[], page=None, score=1 / (i + 1)) for i, t in enumerate(texts)]


def _reranker(up: BedrockRerankUpstream, model: str = "amazon.rerank-v1:0", **kw) -> BedrockReranker:
    kw.setdefault("sleep", lambda _s: None)
    return BedrockReranker(model, region="us-west-2", endpoint_url=up.base_url, **kw)


def _deadline(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


def test_the_order_comes_from_the_model_and_the_request_is_the_wire_shape(up) -> None:
    # When five fused candidates are reranked for the top 3
    out = _reranker(up).rerank(QUERY, _hits(TEXTS), 3, deadline=_deadline())
    # Then the order is the model's (query-word overlap in the loopback), scores set, and one call was billed
    assert [h.chunk_id for h in out.hits] == [1, 2, 4]
    assert out.hits[0].rerank_score == pytest.approx(1.0, abs=1e-6)
    assert out.hits[0].score == 1 / 2  # the fused score is kept beside the rerank score
    assert (out.calls, out.cost_usd) == (1, 0.001)
    sent = up.requests[-1]
    assert sent.path == "/rerank"
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert "/us-west-2/bedrock/aws4_request" in sent.headers["authorization"]
    assert sent.body["queries"] == [{"type": "TEXT", "textQuery": {"text": QUERY}}]
    assert sent.body["sources"][1] == {"type": "INLINE",
                                       "inlineDocumentSource": {"type": "TEXT",
                                                                "textDocument": {"text": TEXTS[1]}}}
    assert sent.body["rerankingConfiguration"] == {
        "type": "BEDROCK_RERANKING_MODEL",
        "bedrockRerankingConfiguration": {
            "numberOfResults": 3,
            "modelConfiguration": {"modelArn": "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"}}}


def test_cohere_rerank_is_named_by_its_region_qualified_arn(up) -> None:
    out = _reranker(up, "cohere.rerank-v3-5:0").rerank(QUERY, _hits(TEXTS), 2, deadline=_deadline())
    arn = up.requests[-1].body["rerankingConfiguration"]["bedrockRerankingConfiguration"]["modelConfiguration"]
    assert arn == {"modelArn": "arn:aws:bedrock:us-west-2::foundation-model/cohere.rerank-v3-5:0"}
    assert [h.chunk_id for h in out.hits] == [1, 2] and out.cost_usd == 0.002


def test_number_of_results_never_exceeds_the_candidates(up) -> None:
    out = _reranker(up).rerank(QUERY, _hits(TEXTS[:2]), 10, deadline=_deadline())
    assert len(out.hits) == 2
    assert up.requests[-1].body["rerankingConfiguration"]["bedrockRerankingConfiguration"]["numberOfResults"] == 2


def test_batches_are_merged_by_score(up) -> None:
    # Given batches of 2: [cats, hnsw+pgvector], [pgvector, nothing], [hnsw]
    out = _reranker(up, batch_size=2).rerank(QUERY, _hits(TEXTS), 3, deadline=_deadline())
    # Then three calls were made, each asked for at most its size, and the merged order is global
    assert len(up.requests) == 3
    assert [r.body["rerankingConfiguration"]["bedrockRerankingConfiguration"]["numberOfResults"]
            for r in up.requests] == [2, 2, 1]
    assert [h.chunk_id for h in out.hits] == [1, 2, 4]
    assert (out.calls, out.cost_usd) == (3, 0.003)


def test_more_candidates_than_one_call_takes_are_split_at_the_api_limit(up) -> None:
    # The API takes at most 1,000 sources a call (botocore's service model); the server refuses more.
    texts = [f"filler text {i}" for i in range(1003)] + ["pgvector hnsw index"]
    out = _reranker(up, batch_size=1000).rerank(QUERY, _hits(texts), 5, deadline=_deadline())
    assert [len(r.body["sources"]) for r in up.requests] == [1000, 4]
    assert out.hits[0].chunk_id == 1003
    assert out.cost_usd == pytest.approx(0.011)  # 10 + 1 started hundreds


def test_next_token_pages_are_followed(up) -> None:
    up.page_size = 1
    out = _reranker(up).rerank(QUERY, _hits(TEXTS), 3, deadline=_deadline())
    assert [h.chunk_id for h in out.hits] == [1, 2, 4]
    assert [r.body.get("nextToken") for r in up.requests] == [None, "page-1", "page-2"]


def test_throttling_and_5xx_are_retried(up) -> None:
    # Given a 429 (with retry-after) and a 503 before an answer
    slept: list[float] = []
    up.inject(Fault.status(429, retry_after=0.5), Fault.status(503))
    out = _reranker(up, sleep=slept.append, jitter=lambda: 1.0).rerank(QUERY, _hits(TEXTS), 2, deadline=_deadline())
    # Then the third attempt answers; the first wait honoured retry-after, the second backed off
    assert [h.chunk_id for h in out.hits] == [1, 2]
    assert len(up.requests) == 3
    assert slept == [0.5, 0.5]  # retry-after 0.5 s; then base 0.25 * 2


def test_throttling_past_the_retries_is_rate_limited(up) -> None:
    up.inject(*[Fault.status(429)] * 3)
    with pytest.raises(e.RateLimited, match="ThrottlingException"):
        _reranker(up, retries=2).rerank(QUERY, _hits(TEXTS), 2, deadline=_deadline())
    assert len(up.requests) == 3


@pytest.mark.parametrize(("fault", "error"), [
    pytest.param(Fault.status(500), e.ServerError, id="500"),
    pytest.param(Fault.status(502), e.ServerError, id="502-bad-gateway"),
    pytest.param(Fault.reset(), e.ProviderUnavailable, id="reset"),
    pytest.param(Fault.malformed(), e.MalformedResponse, id="malformed"),
    pytest.param(Fault.auth(), e.AuthenticationFailed, id="403"),
])
def test_failures_are_classified(up, fault: Fault, error: type[e.ProviderError]) -> None:
    up.inject(fault)
    with pytest.raises(error):
        _reranker(up, retries=0).rerank(QUERY, _hits(TEXTS), 2, deadline=_deadline())


def test_a_slow_reranker_is_cut_at_the_deadline(up) -> None:
    reset_clients()
    reranker = _reranker(up)
    reranker.rerank(QUERY, _hits(TEXTS), 2, deadline=_deadline(0.5))  # builds the client (slow on a busy machine)
    up.inject(Fault.delay(3.0))
    started = time.monotonic()
    with pytest.raises(e.ProviderTimeout):
        reranker.rerank(QUERY, _hits(TEXTS), 2, deadline=_deadline(0.5))
    assert time.monotonic() - started < 1.5  # not retried: a timeout used the time a retry would need
    reset_clients()


def test_bad_input_is_a_4xx_naming_the_field(up) -> None:
    # Given a source the service refuses (over 32,000 characters, sent as is by a caller that skipped the
    # adapter's trimming) — through boto3's own client, as the adapter makes it
    from stratus.aws.bedrock import agent_runtime_client
    from stratus.retrieval.bedrock_rerank import build_request, classify, model_arn

    client = agent_runtime_client(region="us-west-2", endpoint_url=up.base_url, timeout=5)
    params = build_request(QUERY, ["x" * 40_000], model_arn("amazon.rerank-v1:0", "us-west-2"), 1)
    with pytest.raises(Exception) as raised:
        client.rerank(**params)
    err = classify(raised.value, "t")
    assert isinstance(err, e.InvalidRequest) and err.status == 400 and not err.retryable
    assert "sources.0.inlineDocumentSource.textDocument.text" in str(err)


def test_the_adapter_trims_texts_to_the_api_limit(up) -> None:
    out = _reranker(up).rerank(QUERY, _hits(["pgvector " + "x" * 40_000]), 1, deadline=_deadline())
    assert len(out.hits) == 1
    assert len(up.requests[-1].body["sources"][0]["inlineDocumentSource"]["textDocument"]["text"]) == 32_000


def test_an_unknown_model_is_refused_before_any_call(up) -> None:
    with pytest.raises(e.InvalidRequest, match="rerank model") as raised:
        _reranker(up, "cohere.rerank-v9:0")
    assert raised.value.field == "rerank_model"
    assert up.requests == []


# --- retrieve() with a tenant's reranker ---------------------------------------------------------------------

@pytest.fixture
def corpus(db, tenant_id: str) -> str:
    _store(db, tenant_id, "a.txt", TEXTS)
    return tenant_id


def _retrieve(conn, tenant_id: str, up: BedrockRerankUpstream, rerank: bool | None = None, **settings):
    reset_rerankers()
    request = RetrieveRequest.model_validate({"tenant_id": tenant_id, "query": QUERY, "k": 3,
                                              **({} if rerank is None else {"rerank": rerank})})
    merged = {"rerank_endpoint_url": up.base_url, "retry_base_backoff_s": 0.0, **settings}
    try:
        return retrieve(request, conn=conn, settings=load_settings(**merged))
    finally:
        reset_rerankers()


def test_the_deployment_default_reranks(db, corpus: str, up) -> None:
    res = _retrieve(db, corpus, up, reranker="bedrock")
    assert (res.reranker, res.rerank_model, res.reranked, res.rerank_error) == (
        "bedrock", "amazon.rerank-v1:0", True, None)
    assert [h.text for h in res.hits] == [TEXTS[1], TEXTS[2], TEXTS[4]]
    assert all(h.rerank_score is not None for h in res.hits)
    assert res.rerank_cost_usd == 0.001 and "rerank" in res.timings_ms
    assert len(up.requests[-1].body["sources"]) == len(TEXTS)  # every fused candidate, not only k


def test_a_tenant_choice_wins_over_the_default_and_a_request_may_turn_it_off(db, corpus: str, up) -> None:
    # Given a tenant that chose Cohere Rerank 3.5 while the deployment default is none
    with tenant_transaction(corpus, db):
        retrieval_settings.put(db, corpus, {"reranker": "bedrock", "rerank_model": "cohere.rerank-v3-5:0"})
    res = _retrieve(db, corpus, up)
    assert (res.reranker, res.rerank_model, res.reranked) == ("bedrock", "cohere.rerank-v3-5:0", True)
    assert up.requests[-1].body["rerankingConfiguration"]["bedrockRerankingConfiguration"][
        "modelConfiguration"]["modelArn"].endswith("/cohere.rerank-v3-5:0")
    # When a request turns reranking off, no call is made
    calls = len(up.requests)
    res = _retrieve(db, corpus, up, rerank=False)
    assert (res.reranker, res.reranked, len(up.requests)) == ("none", False, calls)
    # And a tenant that chose none is not reranked under a bedrock default
    with tenant_transaction(corpus, db):
        retrieval_settings.put(db, corpus, {"reranker": "none", "rerank_model": None})
    res = _retrieve(db, corpus, up, reranker="bedrock")
    assert (res.reranker, len(up.requests)) == ("none", calls)


def test_an_outage_fails_open_to_the_fused_order(db, corpus: str, up) -> None:
    fused = _retrieve(db, corpus, up, rerank=False)
    up.inject(*[Fault.status(503)] * 3)
    res = _retrieve(db, corpus, up, reranker="bedrock")
    assert (res.reranker, res.reranked) == ("bedrock", False)
    assert res.rerank_error is not None and res.rerank_error.startswith("overloaded:")
    assert [h.chunk_id for h in res.hits] == [h.chunk_id for h in fused.hits]
    assert all(h.rerank_score is None for h in res.hits) and res.rerank_cost_usd == 0.0


def test_a_slow_reranker_fails_open_within_the_stage_deadline(db, corpus: str, up) -> None:
    reset_clients()
    _retrieve(db, corpus, up, reranker="bedrock", rerank_timeout_s=0.5)  # builds the client first
    up.inject(Fault.delay(3.0))
    started = time.monotonic()
    res = _retrieve(db, corpus, up, reranker="bedrock", rerank_timeout_s=0.5)
    assert time.monotonic() - started < 2.0
    assert res.reranked is False and res.rerank_error is not None and res.rerank_error.startswith("timeout:")
    assert len(res.hits) == 3
    reset_clients()


def test_a_tenants_choice_is_invisible_to_another(db, pg_url: str) -> None:
    from tests.conftest import create_tenant

    first, second = create_tenant(pg_url, "rr"), create_tenant(pg_url, "rr")
    with tenant_transaction(first, db):
        retrieval_settings.put(db, first, {"reranker": "bedrock", "rerank_model": None})
    with tenant_transaction(second, db):
        # Even a query that forgets its tenant condition sees only its own tenant's rows (RLS)
        assert db.execute("SELECT count(*) FROM retrieval_settings").fetchone() == (0,)
        assert retrieval_settings.get(db, first) == {}
    with tenant_transaction(first, db):
        assert retrieval_settings.get(db, first) == {"reranker": "bedrock", "rerank_model": None}


def test_repeated_outages_open_the_circuit_and_skip_the_call(up) -> None:
    from stratus.breaker import CircuitBreaker
    from stratus.retrieval.bedrock_rerank import CircuitOpen

    clock = [0.0]
    reranker = _reranker(up, retries=0, breaker=CircuitBreaker(2, 30.0, clock=lambda: clock[0]))
    up.inject(Fault.status(503), Fault.status(503))
    for _ in range(2):
        with pytest.raises(e.Overloaded):
            reranker.rerank(QUERY, _hits(TEXTS), 2, deadline=_deadline())
    # Then the next query fails at once, without a call
    with pytest.raises(CircuitOpen):
        reranker.rerank(QUERY, _hits(TEXTS), 2, deadline=_deadline())
    assert len(up.requests) == 2
    # And after the cooldown one trial goes through and closes it
    clock[0] = 31.0
    assert [h.chunk_id for h in reranker.rerank(QUERY, _hits(TEXTS), 2, deadline=_deadline()).hits] == [1, 2]
    assert reranker.breaker.is_open(reranker.label) is False


def test_the_stored_choice_is_remembered_and_a_change_forgets_it(db, tenant_id: str) -> None:
    from stratus.db import documents
    from stratus.retrieval.rerank import set_tenant_choice, stored_choice

    reset_rerankers()
    with tenant_transaction(tenant_id, db):
        documents.ensure_tenant(db, tenant_id)
        assert stored_choice(db, tenant_id) == {}
        retrieval_settings.put(db, tenant_id, {"reranker": "bedrock", "rerank_model": None})
        assert stored_choice(db, tenant_id) == {}  # remembered for CHOICE_TTL_S: no round trip per query
        assert stored_choice(db, tenant_id, ttl_s=0.0)["reranker"] == "bedrock"
    set_tenant_choice(db, tenant_id, "none", None)  # the process that stores a change forgets its copy
    with tenant_transaction(tenant_id, db):
        assert stored_choice(db, tenant_id)["reranker"] == "none"
    reset_rerankers()
