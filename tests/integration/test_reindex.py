"""Blue/green re-embedding on the real database: a tenant moves to a second model while queries run,
and back with rollback; ingestion during the move writes both models; caches never mix models."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from stratus import cache, embeddings
from stratus.config import load_settings
from stratus.db import chunks as chunk_store
from stratus.db import embedding_state
from stratus.db.chunks import ChunkScope, HnswScan
from stratus.db.connection import connect, tenant_transaction
from stratus.db.records import SourceObject
from stratus.embeddings import get_embedder
from stratus.errors import InvalidInput
from stratus.ingest.pipeline import ingest_document
from stratus.reindex import job
from stratus.retrieval.models import RetrieveRequest
from stratus.retrieval.service import retrieve
from tests.support import second_model

BASE = "all-MiniLM-L6-v2-int8"
TOPICS = [
    "The heat pump defrost cycle reverses the refrigerant flow to melt ice on the outdoor coil.",
    "Sourdough starter needs regular feeding with flour and water to keep the yeast active.",
    "A Kubernetes liveness probe restarts a container that stops answering its health check.",
    "Photosynthesis in chloroplasts turns light, water and carbon dioxide into sugar and oxygen.",
    "The offside rule in football forbids receiving the ball beyond the second-last defender.",
    "Compound interest adds the earned interest to the principal so that it earns interest too.",
    "Glaciers carve U-shaped valleys as they slide downhill under their own weight.",
    "A mutex guards shared memory so that only one thread changes it at a time.",
    "Espresso is brewed by forcing hot water through finely ground coffee at high pressure.",
    "The Treaty of Westphalia in 1648 ended the Thirty Years' War in Europe.",
    "Vaccines train the immune system by exposing it to a harmless piece of a pathogen.",
    "Bicycle gears trade pedalling force for cadence when climbing steep hills.",
]
QUERIES = ["how does a heat pump get rid of ice", "why keep feeding a sourdough starter",
           "what restarts an unhealthy container", "how do glaciers shape valleys"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def model_b():
    with second_model.registered() as name:
        yield name


def _ingest(tenant: str, i: int, text: str, settings) -> None:
    src = SourceObject(tenant, f"doc-{i}.txt", etag=f"e{i}", last_modified=T0 + timedelta(minutes=i), size=len(text),
                       content_type="text/plain")
    result = ingest_document(tenant, f"doc-{i}.txt", text.encode(), src, settings=settings)
    assert result.status == "ingested", result


def _ask(conn, tenant: str, query: str, settings):
    request = RetrieveRequest.model_validate({"tenant_id": tenant, "query": query, "mode": "dense", "k": 3})
    return retrieve(request, conn=conn, settings=settings)


def _vectors(db, tenant: str, model: str) -> int:
    with tenant_transaction(tenant, db):
        row = db.execute("SELECT count(*) FROM chunk_embeddings WHERE embedding_model = %s", [model]).fetchone()
    return int(row[0])


def test_switch_and_rollback_under_concurrent_queries(pg_url, db, tenant_id, model_b):
    settings = load_settings()
    for i, text in enumerate(TOPICS[:-1]):
        _ingest(tenant_id, i, text, settings)
    expected = {q: [h.chunk_id for h in _ask(db, tenant_id, q, settings).hits] for q in QUERIES}
    assert all(len(ids) == 3 for ids in expected.values())

    # A question embedded with B but searched in A's index finds other chunks: mixing would be caught.
    vec_b = get_embedder(model_b).embed([QUERIES[0]])[0]
    with tenant_transaction(tenant_id, db):
        mixed = chunk_store.dense_search(db, tenant_id, vec_b, BASE, ChunkScope(), limit=3, scan=HnswScan())
    assert [cid for cid, _ in mixed] != expected[QUERIES[0]]

    answers: list[tuple[str | None, str, list[int]]] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def query_loop() -> None:
        conn = connect(pg_url)
        try:
            while not stop.is_set():
                for q in QUERIES:
                    r = _ask(conn, tenant_id, q, settings)
                    answers.append((r.embedding_model, q, [h.chunk_id for h in r.hits]))
        except BaseException as err:  # reported by the main thread
            failures.append(err)
        finally:
            conn.close()

    def run_loop_while(action) -> list[tuple[str | None, str, list[int]]]:
        answers.clear()
        stop.clear()
        worker = threading.Thread(target=query_loop)
        worker.start()
        try:
            while len(answers) < 8:
                time.sleep(0.05)
            result = action()
            seen = len(answers)
            while len(answers) < seen + 8:
                time.sleep(0.05)
        finally:
            stop.set()
            worker.join(timeout=60)
        assert not failures, failures
        return result, list(answers)

    # Given a re-embedding into B, started, with a document ingested while it runs (it must get both models)
    progress = job.start(None, tenant_id, model_b, settings)
    assert progress.status == "running" and progress.total == len(TOPICS) - 1
    job.step(None, tenant_id, settings, batch=4)
    _ingest(tenant_id, len(TOPICS) - 1, TOPICS[-1], settings)
    expected = {q: [h.chunk_id for h in _ask(db, tenant_id, q, settings).hits] for q in QUERIES}

    # When the rest runs in small batches while the query loop runs
    def finish() -> job.Progress:
        p = job.status(None, tenant_id, settings)
        while p.target_model is not None:
            p = job.step(None, tenant_id, settings, batch=2)
        return p

    final, seen = run_loop_while(finish)

    # Then every answer came from one model, complete and right, and the model changed once, A -> B
    assert final.status == "switched" and final.query_model == model_b and final.previous_model == BASE
    assert _vectors(db, tenant_id, model_b) == len(TOPICS)  # the chunk ingested mid-run included
    models_seen = [m for m, _, _ in seen]
    assert set(models_seen) == {BASE, model_b}
    assert models_seen == sorted(models_seen, key=lambda m: m != BASE), "the model flipped back and forth"
    for model, q, ids in seen:
        assert ids == expected[q], (model, q, ids)

    # And back with rollback while queries run: B -> A, still complete
    back, seen = run_loop_while(lambda: job.rollback(None, tenant_id, settings))
    assert back.query_model == BASE and back.previous_model == model_b
    models_seen = [m for m, _, _ in seen]
    assert set(models_seen) == {BASE, model_b}
    assert models_seen == sorted(models_seen, key=lambda m: m != model_b)
    for model, q, ids in seen:
        assert ids == expected[q], (model, q, ids)


def test_resumes_from_its_cursor_and_drops_previous(db, tenant_id, model_b):
    settings = load_settings()
    for i, text in enumerate(TOPICS[:5]):
        _ingest(tenant_id, i, text, settings)
    job.start(None, tenant_id, model_b, settings)
    first = job.step(None, tenant_id, settings, batch=2)
    assert (first.embedded, first.status) == (2, "running") and first.cursor > 0
    # A duplicate delivery writing the same batch again writes nothing (progress never counts a chunk twice)
    with tenant_transaction(tenant_id, db):
        done_ids = [int(r[0]) for r in db.execute(
            "SELECT chunk_id FROM chunk_embeddings WHERE embedding_model = %s", [model_b]).fetchall()]
        again = get_embedder(model_b).embed(["x"] * len(done_ids))
        assert embedding_state.put_vectors(db, tenant_id, model_b, done_ids, again) == 0
    # A crash after the batch committed: the next run starts above the cursor and embeds nothing twice.
    assert job.start(None, tenant_id, model_b, settings).cursor == first.cursor
    done = job.run(None, tenant_id, settings, batch=2)
    assert done.status == "switched" and done.embedded == 5  # 2 + 3: no chunk embedded twice
    assert _vectors(db, tenant_id, model_b) == 5
    # Filters apply to the side table's rows through their chunk: only doc-1's chunk, found with model B
    request = RetrieveRequest.model_validate({"tenant_id": tenant_id, "query": QUERIES[1], "mode": "dense", "k": 3,
                                              "filters": {"source_key_prefix": "doc-1"}})
    filtered = retrieve(request, conn=db, settings=settings)
    assert filtered.embedding_model == model_b
    assert [h.source_key for h in filtered.hits] == ["doc-1.txt"]
    with pytest.raises(InvalidInput, match="wait"):
        job.drop_previous(None, tenant_id, settings)  # a warm process may still query the previous model
    # Moving back to the deployment's model: its vectors are on the chunk rows, nothing to embed.
    back = job.start(None, tenant_id, BASE, settings)
    assert back.total == 0
    assert job.step(None, tenant_id, settings).status == "switched"
    embeddings.register("minilm-third-test", second_model.RotatedMiniLM)
    chunk_store.DENSE_INDEXES["minilm-third-test"] = 384
    try:
        with pytest.raises(InvalidInput, match="drop it first") as refused:
            job.start(None, tenant_id, "minilm-third-test", settings)  # a third model while B is still kept
        assert refused.value.field == "model"
    finally:
        embeddings.unregister("minilm-third-test")
        chunk_store.DENSE_INDEXES.pop("minilm-third-test")
    job.drop_previous(None, tenant_id, settings, min_age_s=0)
    assert _vectors(db, tenant_id, model_b) == 0
    with pytest.raises(InvalidInput, match="previous"):
        job.rollback(None, tenant_id, settings)


def test_refusals_name_the_field(tenant_id, model_b):
    settings = load_settings()
    with pytest.raises(InvalidInput) as err:
        job.start(None, tenant_id, "no-such-model", settings)
    assert err.value.field == "model"
    with pytest.raises(InvalidInput) as err:
        job.start(None, tenant_id, BASE, settings)
    assert err.value.field == "model"


def test_cache_entries_never_cross_models(db, tenant_id, model_b):
    base = cache.CacheScope(tenant_id, "p" * 8, "fast", "h" * 8)
    moved = cache.CacheScope(tenant_id, "p" * 8, "fast", "h" * 8, embedding_model=model_b)
    assert base.key != moved.key
    question = "what does the defrost cycle do"
    vector = get_embedder(BASE).embed([question])[0]
    with tenant_transaction(tenant_id, db):
        cache.store(db, base, question, [], [], vector, {"text": "it melts ice"}, ttl_s=600, embedding_model=BASE)
    with tenant_transaction(tenant_id, db):
        assert cache.lookup(db, base, question, [], vector, semantic=True, threshold=0.9,
                            embedding_model=BASE) is not None
        # After the switch: neither the exact key nor a similar question (embedded with B) finds it.
        vec_b = get_embedder(model_b).embed([question])[0]
        assert cache.lookup(db, moved, question, [], vec_b, semantic=True, threshold=0.5,
                            embedding_model=model_b) is None
        assert cache.lookup(db, base, question + "?", [], vec_b, semantic=True, threshold=0.5,
                            embedding_model=model_b) is None
    assert np.isfinite(vec_b).all()


def test_a_second_models_query_uses_its_own_partial_index(db, pg_url, tenant_id, model_b):
    from stratus.db.embedding_state import ensure_index

    with connect(pg_url, app_role=False) as owner:
        name = ensure_index(owner, model_b, 384)
        assert ensure_index(owner, model_b, 384) == name  # idempotent
        owner.commit()
    db.execute("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
    db.commit()
    try:
        with tenant_transaction(tenant_id, db):
            plan = chunk_store.explain_dense(db, tenant_id, model_b, ChunkScope(metadata={"lang": "en"}), side=True)
        assert name in plan, plan
    finally:
        db.execute("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort")
        db.commit()
        with connect(pg_url, app_role=False) as owner:
            owner.execute(f'DROP INDEX "{name}"')
            owner.commit()
