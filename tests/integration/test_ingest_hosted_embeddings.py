"""Ingestion and retrieval with a hosted embedding model (Titan v2 at 512 dimensions, at its loopback
InvokeModel server): chunks stored with the model's id and dimension, the provider's tokens and their cost
in the tenant's spend, a chunk the provider refuses failing the document, and a dense query on the model's
own index."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from stratus.aws.bedrock import reset_clients
from stratus.config import Settings, load_settings
from stratus.db.connection import connect, tenant_transaction
from stratus.db.records import SourceObject
from stratus.db.vector_index import ensure_model_index
from stratus.ingest.pipeline import ingest_document
from stratus.retrieval.models import RetrieveRequest
from stratus.retrieval.service import retrieve
from tests.support.upstreams import BedrockEmbedUpstream, Fault

pytestmark = pytest.mark.integration
MODEL = "amazon.titan-embed-text-v2:0/512"
DOC = b"""# Refunds

Damaged goods are refunded in full within thirty days of delivery.

# Shipping

Parcels to Europe take five working days by road freight.
"""


@pytest.fixture(scope="module")
def bedrock() -> Iterator[BedrockEmbedUpstream]:
    with BedrockEmbedUpstream() as up:
        yield up


@pytest.fixture
def settings(bedrock: BedrockEmbedUpstream, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> Settings:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    reset_clients()
    bedrock.clear()
    return load_settings(database_url=pg_url, embedding_model=MODEL, bedrock_endpoint_url=bedrock.base_url,
                         retry_attempts=0, chunk_max_tokens=40, chunk_overlap_tokens=0)


def _source(tenant_id: str, key: str) -> SourceObject:
    return SourceObject(tenant_id, key, etag="e1", last_modified=datetime(2026, 1, 1, tzinfo=UTC), size=1)


def test_a_document_is_embedded_by_the_hosted_model_and_its_tokens_are_billed(settings, bedrock, db, pg_url,
                                                                             tenant_id) -> None:
    result = ingest_document(tenant_id, "policy.md", DOC, _source(tenant_id, "policy.md"), settings=settings)
    assert result.status == "ingested" and result.chunk_count >= 2
    assert {r.path for r in bedrock.requests} == {"/model/amazon.titan-embed-text-v2%3A0/invoke"}
    assert {r.body["dimensions"] for r in bedrock.requests} == {512}
    with tenant_transaction(tenant_id, db):
        rows = db.execute("SELECT DISTINCT embedding_model, vector_dims(embedding) FROM chunks").fetchall()
    assert rows == [(MODEL, 512)]
    billed = sum(len(r.body["inputText"].split()) for r in bedrock.requests)
    with connect(pg_url, app_role=False) as owner:
        spent = owner.execute("SELECT sum(spent_usd), sum(tokens), sum(requests) FROM budget_usage"
                              " WHERE tenant_id = %s", [tenant_id]).fetchone()
    assert spent is not None and int(spent[1]) == billed and int(spent[2]) == 0
    assert float(spent[0]) == pytest.approx(billed * 0.02 / 1e6, abs=1e-6)

    # And a dense query, embedded by the same model, is answered from the model's own index
    owner = connect(pg_url, app_role=False)
    owner.autocommit = True
    with owner:
        ensure_model_index(owner, MODEL, 512)
    request = RetrieveRequest.model_validate({"tenant_id": tenant_id, "query": "damaged goods refunded",
                                              "mode": "dense", "k": 2})
    hits = retrieve(request, conn=db, settings=settings).hits
    assert "refunded" in hits[0].text


def test_a_chunk_the_model_refuses_fails_the_document_not_the_queue(settings, bedrock, db, tenant_id) -> None:
    # Given a provider that refuses one of the document's texts (a 400 ValidationException)
    bedrock.inject(Fault.status(400))
    # When the document is ingested
    result = ingest_document(tenant_id, "policy.md", DOC, _source(tenant_id, "policy.md"), settings=settings)
    # Then it is recorded as failed, naming the model (permanent: retrying the message would not help)
    assert result.status == "failed"
    with tenant_transaction(tenant_id, db):
        error = db.execute("SELECT status, error FROM documents WHERE source_key = 'policy.md'").fetchone()
    assert error is not None and error[0] == "failed" and f"cannot be embedded by {MODEL}" in error[1]


def test_a_reindex_into_a_hosted_model_is_billed_batch_by_batch(bedrock, db, pg_url, tenant_id, monkeypatch) -> None:
    """A tenant moved from the offline model to Titan pays for the re-embedding's tokens, like ingestion's."""
    from stratus.reindex import job

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    reset_clients()
    offline = load_settings(database_url=pg_url, bedrock_endpoint_url=bedrock.base_url, retry_attempts=0,
                            chunk_max_tokens=40, chunk_overlap_tokens=0)
    assert ingest_document(tenant_id, "policy.md", DOC, _source(tenant_id, "policy.md"),
                           settings=offline).status == "ingested"
    bedrock.clear()
    job.start(None, tenant_id, MODEL, offline)
    while job.step(None, tenant_id, offline).status != "switched":
        pass
    billed = sum(len(r.body["inputText"].split()) for r in bedrock.requests)
    with connect(pg_url, app_role=False) as owner:
        spent = owner.execute("SELECT sum(spent_usd), sum(tokens) FROM budget_usage WHERE tenant_id = %s",
                              [tenant_id]).fetchone()
    assert billed > 0 and spent is not None and int(spent[1]) == billed
    assert float(spent[0]) == pytest.approx(billed * 0.02 / 1e6, abs=1e-6)
