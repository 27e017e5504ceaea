"""Sentence vectors stored at ingestion (migration 0020) and reused by the groundedness rail."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import psycopg

from stratus import query
from stratus.db.connection import connect, tenant_transaction
from stratus.db.records import SourceObject
from stratus.embeddings import get_embedder
from stratus.guard import grounding
from stratus.guard.passage_vectors import prime
from stratus.guard.policy import effective
from stratus.guard.rails import start
from stratus.ingest.pipeline import ingest_document
from stratus.llm import extractive
from stratus.llm.types import ContextPassage
from stratus.retrieval.models import Hit, RetrieveResponse
from stratus.workflow_state import GenerateTask

MODEL = grounding.EMBEDDING_MODEL
DOC = (b"# Keys\n\nAPI keys are created in the console under Settings. Each key belongs to one project. "
       b"Keys expire after 90 days unless an administrator sets a shorter lifetime.\n\n"
       b"## Limits\n\nThe default allowance is 600 requests per minute. A request over the limit gets status "
       b"429 and a Retry-After header. Clients should back off exponentially.\n")
# Paraphrases: no sentence is settled by its words alone, so every claim needs the embedder.
ANSWER = ("You make keys in the console's settings page [1]. A key lasts ninety days by default [1]. "
          "Too many calls are refused and you must wait before sending more [2].")


class RecordingEmbedder:
    """The real embedder, recording every text it is asked to embed."""

    def __init__(self) -> None:
        self.inner = get_embedder(MODEL)
        self.model_name, self.dimensions = MODEL, self.inner.dimensions
        self.texts: list[str] = []

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.inner.embed(texts)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.inner.token_offsets(text)


def _ingest(tenant: str, key: str = "keys.md", etag: str = "e1", minutes: int = 0) -> None:
    source = SourceObject(tenant, key, etag=etag, last_modified=datetime(2025, 1, 1, 0, minutes, tzinfo=UTC),
                          size=len(DOC), content_type=None)
    assert ingest_document(tenant, key, DOC, source).status == "ingested"


def _passages(db: psycopg.Connection, tenant: str) -> list[ContextPassage]:
    with tenant_transaction(tenant, db):
        rows = db.execute("SELECT id, document_id, document_version, text FROM chunks ORDER BY ordinal").fetchall()
    return [ContextPassage(number=n, chunk_id=i, document_id=str(d), document_version=v, source_key="keys.md",
                           text=t) for n, (i, d, v, t) in enumerate(rows, start=1)]


def test_ingestion_stores_each_chunk_sentence_vector_with_its_model(db, tenant_id, new_tenant) -> None:
    _ingest(tenant_id)
    passages = _passages(db, tenant_id)
    with tenant_transaction(tenant_id, db):
        rows = db.execute("SELECT chunk_id, ordinal, embedding_model, embedding FROM chunk_sentences"
                          " ORDER BY chunk_id, ordinal").fetchall()
    expected = [(p.chunk_id, n, s) for p in passages for n, s in enumerate(extractive.split_sentences(p.text))]
    assert [(c, o) for c, o, _, _ in rows] == [(c, n) for c, n, _ in expected]
    assert {m for _, _, m, _ in rows} == {MODEL}
    fresh = get_embedder(MODEL).embed([s for _, _, s in expected])
    stored = np.array([v.to_numpy() for *_, v in rows], dtype=np.float32)
    assert np.min(np.sum(stored * fresh, axis=1)) > 0.999  # halfvec keeps the cosine
    with tenant_transaction(new_tenant(), db):  # RLS: another tenant sees none of them
        assert db.execute("SELECT count(*) FROM chunk_sentences").fetchone() == (0,)


def test_groundedness_embeds_only_the_answer_once_passages_are_primed(db, tenant_id) -> None:
    _ingest(tenant_id)
    passages = _passages(db, tenant_id)
    sentences = [s for p in passages for s in extractive.split_sentences(p.text)]

    extractive.sentence_vectors.clear()
    cold = RecordingEmbedder()
    baseline = grounding.groundedness(ANSWER, passages, embedder=cold)
    assert set(sentences) <= set(cold.texts)  # without stored vectors the passages are embedded

    extractive.sentence_vectors.clear()
    assert prime(db, tenant_id, passages, MODEL) == len(set(sentences))
    warm = RecordingEmbedder()
    primed = grounding.groundedness(ANSWER, passages, embedder=warm)
    assert sorted(warm.texts) == sorted(s.text for s in baseline.sentences)  # the answer's claims only
    assert primed.supported == baseline.supported
    assert [round(s.score, 2) for s in primed.sentences] == [round(s.score, 2) for s in baseline.sentences]


def test_chunks_without_stored_vectors_fall_back_to_embedding(db, tenant_id) -> None:
    _ingest(tenant_id)
    passages = _passages(db, tenant_id)
    with tenant_transaction(tenant_id, db):  # as a chunk ingested before migration 0020
        db.execute("DELETE FROM chunk_sentences")
    extractive.sentence_vectors.clear()
    assert prime(db, tenant_id, passages, MODEL) == 0
    assert prime(db, tenant_id, passages, "another-model") == 0
    embedder = RecordingEmbedder()
    grounding.groundedness(ANSWER, passages, embedder=embedder)
    assert set(extractive.split_sentences(passages[0].text)) <= set(embedder.texts)


def test_a_new_version_replaces_the_stored_sentences(db, tenant_id) -> None:
    _ingest(tenant_id)
    old = {p.chunk_id for p in _passages(db, tenant_id)}
    source = SourceObject(tenant_id, "keys.md", etag="e2", last_modified=datetime(2025, 1, 2, tzinfo=UTC),
                          size=1, content_type=None)
    ingest_document(tenant_id, "keys.md", DOC.replace(b"600", b"900"), source)
    with tenant_transaction(tenant_id, db):
        ids = {r[0] for r in db.execute("SELECT DISTINCT chunk_id FROM chunk_sentences").fetchall()}
    assert ids and not ids & old
    assert ids == {p.chunk_id for p in _passages(db, tenant_id)}


def _rag_task(tenant: str, passages: list[ContextPassage], *, groundedness: str = "flag") -> GenerateTask:
    hits = [Hit(chunk_id=p.chunk_id, document_id=p.document_id, source_key=p.source_key,
                document_version=p.document_version, text=p.text, title=None, heading_path=[], page=None, score=1.0)
            for p in passages]
    retrieval = RetrieveResponse(tenant_id=tenant, query="keys?", mode="hybrid", k=len(hits), reranker="none",
                                 hits=hits, timings_ms={})
    state = start(effective({"groundedness": {"action": groundedness}}))
    return GenerateTask(request_id="r-1", tenant_id=tenant, mode="rag", query="keys?",
                        messages=[{"role": "user", "content": "keys?"}], retrieval=retrieval, guard=state)


def test_the_output_step_loads_the_retrieved_chunks_vectors_when_groundedness_runs_there(db, tenant_id) -> None:
    _ingest(tenant_id)
    passages = _passages(db, tenant_id)
    sentences = {s for p in passages for s in extractive.split_sentences(p.text)}
    embedder = RecordingEmbedder()

    extractive.sentence_vectors.clear()
    query.load_passage_vectors(_rag_task(tenant_id, passages, groundedness="off"), conn=db)
    extractive.sentence_vectors.embed(embedder, sorted(sentences))
    assert set(embedder.texts) == sentences  # nothing was loaded: groundedness does not run

    extractive.sentence_vectors.clear()
    embedder.texts.clear()
    query.load_passage_vectors(_rag_task(tenant_id, passages), conn=db)  # flag: the rail runs after the response
    extractive.sentence_vectors.embed(embedder, sorted(sentences))
    assert set(embedder.texts) == sentences

    extractive.sentence_vectors.clear()
    embedder.texts.clear()
    query.load_passage_vectors(_rag_task(tenant_id, passages, groundedness="block"), conn=db)
    extractive.sentence_vectors.embed(embedder, sorted(sentences))
    assert embedder.texts == []  # every passage sentence came from the database


def test_the_rails_after_the_response_read_a_workflow_answers_passages_back_by_chunk_id(db, tenant_id) -> None:
    _ingest(tenant_id)
    passages = _passages(db, tenant_id)
    ids = [p.chunk_id for p in passages]
    extractive.sentence_vectors.clear()
    given = query.after_response_rails(db, tenant_id, ANSWER, ["groundedness"], passages=passages)
    extractive.sentence_vectors.clear()
    read_back = query.after_response_rails(db, tenant_id, ANSWER, ["groundedness"], chunk_ids=[*ids, 10**12])
    assert [v.rail for v in given] == ["groundedness"] and given == read_back  # an unknown id is left out
    assert read_back[0].stage == "output" and read_back[0].action in ("pass", "flag")
    # Stored vectors were primed: embedding the passages' sentences now costs nothing.
    embedder = RecordingEmbedder()
    extractive.sentence_vectors.embed(embedder, sorted({s for p in passages for s in
                                                        extractive.split_sentences(p.text)}))
    assert embedder.texts == []
    assert query.after_response_rails(db, tenant_id, ANSWER, ["groundedness"], chunk_ids=[]) == []
    assert query.after_response_rails(db, "another-tenant", ANSWER, ["groundedness"], chunk_ids=ids) == []


def test_a_policy_changed_to_block_since_the_answer_records_flag(db, tenant_id) -> None:
    from stratus.guard.policy import set_policy

    _ingest(tenant_id)
    passages = _passages(db, tenant_id)
    set_policy(db, tenant_id, {"groundedness": {"action": "block"}})
    invented = "Every key lasts exactly 400 days and is renewed by the billing team [1]."
    (verdict,) = query.after_response_rails(db, tenant_id, invented, ["groundedness"], passages=passages)
    assert verdict.score < verdict.threshold and verdict.action == "flag"  # the answer went out under flag


def test_every_choice_of_n_is_scored_after_the_response(db, tenant_id) -> None:
    _ingest(tenant_id)
    passages = _passages(db, tenant_id)
    invented = "Every key lasts exactly 400 days and is renewed by the billing team [1]."
    first, second, third = query.after_response_rails(db, tenant_id, ANSWER, ["groundedness"], passages=passages,
                                                      other_choices=[(1, invented), (2, ANSWER)])
    assert "choice" not in first.details and second.details["choice"] == 1 and third.details["choice"] == 2
    assert second.action == "flag" and second.score < second.threshold and second.score < first.score
    assert third.model_copy(update={"details": first.details}) == first  # the same text, the same verdict
    # Past `stop_at` no further choice is started; the first is always scored
    (only,) = query.after_response_rails(db, tenant_id, ANSWER, ["groundedness"], passages=passages,
                                         other_choices=[(1, invented)], stop_at=time.time() - 1)
    assert only == first


def test_a_database_outage_only_costs_the_embedding(db, tenant_id, pg_url) -> None:
    _ingest(tenant_id)
    passages = _passages(db, tenant_id)
    broken = connect(pg_url)
    broken.close()
    extractive.sentence_vectors.clear()
    query.load_passage_vectors(_rag_task(tenant_id, passages, groundedness="block"), conn=broken)  # logs only
    embedder = RecordingEmbedder()
    grounding.groundedness(ANSWER, passages, embedder=embedder)
    assert set(extractive.split_sentences(passages[0].text)) <= set(embedder.texts)
