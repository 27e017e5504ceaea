"""Retrieval on the real database: BM25 arithmetic, tenant isolation, filters, the HNSW plan, the handler."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

from stratus.config import load_settings
from stratus.db import chunks as chunk_store
from stratus.db import documents
from stratus.db.connection import connect, tenant_transaction
from stratus.db.records import ChunkDraft, SourceObject
from stratus.embeddings import get_embedder
from stratus.errors import InvalidInput
from stratus.lexical_analysis import query_terms, query_text
from stratus.retrieval.models import RetrieveRequest
from stratus.retrieval.service import retrieve
from tests.conftest import load_function_app

ROOT = Path(__file__).resolve().parents[2]
MODEL = "all-MiniLM-L6-v2-int8"


def _store(conn, tenant_id: str, key: str, texts: list[str], *, vectors=None, metadata=None) -> str:
    """One document whose chunks are `texts`, embedded for real unless `vectors` is given."""
    if vectors is None:
        vectors = get_embedder(MODEL).embed(texts)
    drafts = [
        ChunkDraft(ordinal=i, text=t, token_count=len(t.split()), metadata=(metadata or {}))
        for i, t in enumerate(texts)
    ]
    with tenant_transaction(tenant_id, conn):
        documents.ensure_tenant(conn, tenant_id)
        doc = documents.lock_document(conn, tenant_id, key)
        documents.replace_version(
            conn, doc, SourceObject(tenant_id=tenant_id, key=key), title=key, content_hash=uuid.uuid4().hex,
            chunks=drafts, embeddings=np.asarray(vectors, dtype=np.float32), embedding_model=MODEL,
        )
    return doc.id


def _analyze(pg_url: str) -> None:
    # Statistics as a real deployment has them (only the table owner may ANALYZE).
    with connect(pg_url, app_role=False) as owner:
        owner.execute("ANALYZE chunks")
        owner.commit()


def _ask(conn, tenant_id: str, query: str, mode: str = "hybrid", k: int = 10, filters=None, **settings):
    request = RetrieveRequest.model_validate(
        {"tenant_id": tenant_id, "query": query, "mode": mode, "k": k, "filters": filters or {}}
    )
    return retrieve(request, conn=conn, settings=load_settings(**settings))


def test_bm25_scores_match_a_hand_computation(db, tenant_id: str) -> None:
    # Given three chunks whose lexemes are plain words (lengths 3, 2 and 1; avgdl = 2)
    _store(db, tenant_id, "a.txt", ["cat cat dog"])
    _store(db, tenant_id, "b.txt", ["dog bird"])
    _store(db, tenant_id, "c.txt", ["fish"])
    # When we search for "Cat and DOG" (lower-cased, not stemmed; "and" is a stop word)
    res = _ask(db, tenant_id, "Cat and DOG", mode="lexical")
    # Then the scores are BM25 (the configured k1 and b, Lucene idf) over N = 3, df(cat) = 1, df(dog) = 2
    settings = load_settings()
    k1, b, avgdl = settings.bm25_k1, settings.bm25_b, 2.0
    idf_cat, idf_dog = math.log(1 + 2.5 / 1.5), math.log(1 + 1.5 / 2.5)

    def term(idf: float, tf: int, dl: int) -> float:
        return idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))

    expected = {"a.txt": term(idf_cat, 2, 3) + term(idf_dog, 1, 3), "b.txt": term(idf_dog, 1, 2)}
    got = {h.source_key: h.score for h in res.hits}
    assert got.keys() == expected.keys()
    for key, score in expected.items():
        assert got[key] == pytest.approx(score, rel=1e-9)
    assert [h.source_key for h in res.hits] == ["a.txt", "b.txt"]
    assert res.hits[0].lexical_rank == 1 and res.hits[0].dense_rank is None and res.lexical_exact


SMALL_CORPUS = [
    "Rotate the API key from the admin console before it expires; expired keys return 401.",
    "The ingest queue retries a failed message three times before moving it to the dead letter queue.",
    "Vector search uses an HNSW index with cosine distance; raise ef_search for better recall.",
    "Budgets cap a tenant's monthly spend; requests over budget fail with error code budget_exceeded.",
    "Rate limits apply per key: the gateway answers 429 with a retry-after header when a key is over limit.",
    "Documents uploaded to the bucket are chunked, embedded and indexed; deleting the object removes them.",
    "The dead letter queue keeps messages for fourteen days so an operator can inspect and redrive them.",
    "An expired or revoked key cannot be used again; create a new key and update your clients.",
    "Cosine similarity compares the direction of two vectors; the index stores normalised embeddings.",
    "Monthly budget reports show spend per tenant, per model and per key, with cost in US dollars.",
    "Retry with exponential backoff when the provider returns 429 or 503, honouring retry-after.",
    "Guardrails redact personal data such as email addresses and phone numbers before the model sees them.",
]


def test_bm25_ranking_agrees_with_bm25s(db, tenant_id: str) -> None:
    bm25s = pytest.importorskip("bm25s")
    for i, text in enumerate(SMALL_CORPUS):
        _store(db, tenant_id, f"doc-{i:02d}.txt", [text], vectors=np.eye(384, dtype=np.float32)[[i]])
    # bm25s indexes the very same tokens: each chunk's lexemes repeated by their position count.
    with tenant_transaction(tenant_id, db):
        rows = db.execute(
            "SELECT d.source_key, u.lexeme, coalesce(array_length(u.positions, 1), 1) FROM chunks c"
            " JOIN documents d ON d.id = c.document_id, unnest(c.lexemes) u ORDER BY d.source_key, u.lexeme"
        ).fetchall()
    keys = sorted({r[0] for r in rows})
    tokens: dict[str, list[str]] = {k: [] for k in keys}
    for key, lexeme, tf in rows:
        tokens[key] += [lexeme] * tf
    settings = load_settings()
    reference = bm25s.BM25(method="lucene", k1=settings.bm25_k1, b=settings.bm25_b)
    reference.index([tokens[k] for k in keys], show_progress=False)
    vocabulary = {t for ts in tokens.values() for t in ts}

    for query in ["expired key", "dead letter queue retries", "429 retry-after", "cosine index recall",
                  "monthly budget per tenant"]:
        with tenant_transaction(tenant_id, db):
            lexemes = chunk_store.query_lexemes(db, query_text(query))
        # The terms Stratus scores: those in the corpus, a present compound standing for its parts.
        q_tokens = sorted(query_terms({t: 1 for t in lexemes if t in vocabulary}))
        ref_scores = reference.get_scores(q_tokens)
        expected = {keys[i]: float(s) for i, s in enumerate(ref_scores) if s > 0}
        res = _ask(db, tenant_id, query, mode="lexical", k=len(SMALL_CORPUS))
        got = {h.source_key: h.score for h in res.hits}
        assert got.keys() == expected.keys(), query
        # Same ranking; bm25s' Lucene variant omits the constant (k1 + 1) factor.
        for key in got:
            assert got[key] == pytest.approx(expected[key] * (settings.bm25_k1 + 1), rel=1e-5), (query, key)
        ranked = sorted(expected, key=lambda k: (-expected[k], k))
        assert [h.source_key for h in res.hits] == ranked, query


def test_another_tenants_chunks_are_never_returned(db, tenant_id: str) -> None:
    # Given two tenants holding identical documents
    other = f"t-{uuid.uuid4().hex[:12]}"
    texts = SMALL_CORPUS[:6]
    vectors = get_embedder(MODEL).embed(texts)
    mine = _store(db, tenant_id, "shared.txt", texts, vectors=vectors)
    theirs = _store(db, other, "shared.txt", texts, vectors=vectors)
    for mode in ("lexical", "dense", "hybrid"):
        # When each tenant searches in every mode
        for tenant, own in ((tenant_id, mine), (other, theirs)):
            res = _ask(db, tenant, "rotate an expired API key", mode=mode, k=20)
            # Then each sees its own chunks (all six by vector) and nothing else
            assert res.hits, mode
            if mode != "lexical":
                assert len(res.hits) == 6, mode
            assert {h.document_id for h in res.hits} == {own}, mode


def test_filters_still_return_k_results_with_iterative_scans(db, pg_url: str, tenant_id: str) -> None:
    # Given 1000 chunks of noise and 12 chunks in the one document (and language) we filter on
    rng = np.random.default_rng(7)
    noise = rng.normal(size=(1000, 384)).astype(np.float32)
    for i in range(5):
        _store(db, tenant_id, f"bulk/{i}.txt", [f"filler text number {j}" for j in range(200)],
               vectors=noise[i * 200:(i + 1) * 200], metadata={"lang": "fr"})
    wanted = _store(db, tenant_id, "guides/keys.md", SMALL_CORPUS, metadata={"lang": "en"})
    _analyze(pg_url)
    query_vec = get_embedder(MODEL).embed(["how do I rotate keys"])[0]
    en_only = chunk_store.ChunkScope(metadata={"lang": "en"})
    # Steer the planner to the HNSW path (the only one that yields rows in distance order).
    db.execute("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
    db.commit()
    try:
        with tenant_transaction(tenant_id, db):
            assert "chunks_embedding_minilm" in chunk_store.explain_dense(db, tenant_id, MODEL, en_only)
            # Control: without iterative scans, a small ef_search finds fewer than k rows that pass the filter.
            query, params = chunk_store.dense_statement(MODEL, en_only)
            db.execute("SET LOCAL hnsw.iterative_scan = off; SET LOCAL hnsw.ef_search = 10")
            params.update(qvec=query_vec, tenant=tenant_id, fetch=10)
            assert len(db.execute(query, params).fetchall()) < 10
        # When we retrieve through the service (iterative scans on) with the same tiny ef_search
        for filters in ({"document_ids": [wanted]}, {"source_key_prefix": "guides/"}, {"metadata": {"lang": "en"}}):
            for mode in ("dense", "hybrid"):
                res = _ask(db, tenant_id, "how do I rotate keys", mode=mode, k=10, filters=filters,
                           hnsw_ef_search=10)
                # Then we still get k results, all inside the filter
                assert len(res.hits) == 10, (filters, mode)
                assert {h.document_id for h in res.hits} == {wanted}, (filters, mode)
                if mode == "dense":  # re-sorted by distance after the relaxed-order scan
                    assert [h.dense_rank for h in res.hits] == list(range(1, 11))
                    assert all(a.dense_score >= b.dense_score for a, b in zip(res.hits, res.hits[1:], strict=False))
    finally:
        db.rollback()
        db.execute("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort")
        db.commit()
    # A filter that matches nothing returns nothing (not everything)
    assert _ask(db, tenant_id, "keys", filters={"source_key_prefix": "nope/"}).hits == []
    assert _ask(db, tenant_id, "keys", filters={"metadata": {"lang": "de"}}).hits == []
    assert _ask(db, tenant_id, "keys", filters={"source_key_prefix": "guides/%"}).hits == []  # % is literal


def test_dense_search_under_a_restrictive_filter_matches_exact_search(db, pg_url: str, tenant_id: str) -> None:
    # Given two tenants sharing the HNSW index, and one section in ten of this tenant's chunks tagged
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(20, 384)).astype(np.float32)
    vectors = centres[rng.integers(0, 20, size=1200)] + rng.normal(0, 0.3, size=(1200, 384)).astype(np.float32)
    other = f"t-{uuid.uuid4().hex[:12]}"
    _store(db, other, "bulk.txt", [f"theirs {i}" for i in range(600)], vectors=vectors[:600])
    for s in range(10):
        _store(db, tenant_id, f"section-{s}.txt", [f"mine {s}.{i}" for i in range(60)],
               vectors=vectors[600 + s * 60:600 + (s + 1) * 60], metadata={"section": f"s{s}"})
    _analyze(pg_url)
    query = centres[3] + rng.normal(0, 0.3, size=384).astype(np.float32)
    scope = chunk_store.ChunkScope(metadata={"section": "s7"})
    # Steer the planner to the HNSW path, as a large tenant gets it.
    db.execute("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
    db.commit()
    try:
        with tenant_transaction(tenant_id, db):
            assert "chunks_embedding_minilm" in chunk_store.explain_dense(db, tenant_id, MODEL, scope)
            # The index's relaxed-order output is never taken as presorted: all `fetch` rows reach the sort
            statement, params = chunk_store.dense_statement(MODEL, scope)
            params.update(qvec=query, tenant=tenant_id, fetch=30)
            plan = "\n".join(r[0] for r in db.execute(sql.SQL("EXPLAIN ") + statement, params).fetchall())
            assert "chunks_embedding_minilm" in plan and "Sort" not in plan, plan
            exact = db.execute(
                "SELECT id, embedding <=> %s::vector FROM chunks WHERE tenant_id = %s AND metadata @> %s"
                " ORDER BY 2, id LIMIT 10", [query, tenant_id, '{"section": "s7"}']).fetchall()
            for mode in ("relaxed_order", "strict_order"):
                # When the dense query runs with a small candidate list under the filter
                scan = chunk_store.HnswScan(ef_search=20, iterative_scan=mode, fetch=30)
                rows = chunk_store.dense_search(db, tenant_id, query, MODEL, scope, limit=10, scan=scan)
                # Then it returns k rows, all inside the filter, nearest first, the same as an exact scan
                assert len(rows) == 10, mode
                assert [r[0] for r in rows] == [r[0] for r in exact], mode
                assert [r[1] for r in rows] == pytest.approx([r[1] for r in exact], abs=1e-5)
            # And the settings it ran with are the transaction's own (nothing leaks to the session)
            assert db.execute("SHOW hnsw.ef_search").fetchone()[0] == "20"
        assert db.execute("SHOW hnsw.ef_search").fetchone()[0] == "40"
    finally:
        db.rollback()
        db.execute("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort")
        db.commit()


def test_hybrid_runs_its_dense_side_on_the_second_connection(db, pg_url: str, tenant_id: str) -> None:
    # Given a tenant's documents, another tenant holding the same text, and a second connection for the dense side
    other = f"t-{uuid.uuid4().hex[:12]}"
    vectors = get_embedder(MODEL).embed(SMALL_CORPUS)
    mine = _store(db, tenant_id, "guides/keys.md", SMALL_CORPUS, vectors=vectors, metadata={"lang": "en"})
    _store(db, other, "guides/keys.md", SMALL_CORPUS, vectors=vectors, metadata={"lang": "en"})
    statements: list[str] = []

    class Recorded(psycopg.Cursor):  # the side connection's statements, as sent to the server
        def execute(self, query, params=None, **kwargs):
            statements.append(query if isinstance(query, str) else query.as_string(self))
            return super().execute(query, params, **kwargs)

    side = connect(pg_url)
    side.cursor_factory = Recorded
    try:
        for filters in ({}, {"source_key_prefix": "guides/"}, {"metadata": {"lang": "en"}}):
            request = RetrieveRequest.model_validate(
                {"tenant_id": tenant_id, "query": "rotate an expired API key", "mode": "hybrid", "k": 6,
                 "filters": filters})
            # When the two sides run at once, and then one after the other on one connection
            together = retrieve(request, conn=db, dense_conn=side, settings=load_settings())
            in_turn = retrieve(request, conn=db, settings=load_settings(retrieval_parallel=False))
            # Then both give the same fused ranking, of this tenant's chunks only
            assert [(h.chunk_id, h.lexical_rank, h.dense_rank) for h in together.hits] == \
                [(h.chunk_id, h.lexical_rank, h.dense_rank) for h in in_turn.hits], filters
            assert together.hits and {h.document_id for h in together.hits} == {mine}, filters
            assert {"embed", "lexical", "dense"} <= set(together.timings_ms)
            # And the HNSW walk ran on the second connection, in a transaction of its own that is closed
            assert any("<=>" in q for q in statements) and not any("to_tsvector" in q for q in statements)
            assert side.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            statements.clear()
    finally:
        side.close()


def test_hybrid_whose_second_connection_is_lost_searches_on_the_first(db, pg_url: str, tenant_id: str) -> None:
    # Given a second connection that is gone (as after a failover while the Lambda was frozen)
    _store(db, tenant_id, "keys.md", SMALL_CORPUS[:3])
    side = connect(pg_url)
    side.close()
    request = RetrieveRequest.model_validate({"tenant_id": tenant_id, "query": "rotate keys", "mode": "hybrid"})
    in_turn = retrieve(request, conn=db, settings=load_settings(retrieval_parallel=False))
    # When hybrid hands its dense side to it, then the dense side runs again on the caller's connection
    got = retrieve(request, conn=db, dense_conn=side, settings=load_settings())
    assert [(h.chunk_id, h.dense_rank) for h in got.hits] == [(h.chunk_id, h.dense_rank) for h in in_turn.hits]
    assert any(h.dense_rank is not None for h in got.hits)


def test_hybrid_runs_its_sides_in_turn_when_every_worker_is_busy(db, pg_url: str, tenant_id: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from stratus.retrieval import service

    _store(db, tenant_id, "keys.md", SMALL_CORPUS[:3])
    monkeypatch.setattr(service, "_slots", threading.BoundedSemaphore(1))
    service._slots.acquire()  # every worker busy
    statements: list[str] = []

    class Recorded(psycopg.Cursor):
        def execute(self, query, params=None, **kwargs):
            statements.append(str(query))
            return super().execute(query, params, **kwargs)

    side = connect(pg_url)
    side.cursor_factory = Recorded
    try:
        request = RetrieveRequest.model_validate({"tenant_id": tenant_id, "query": "rotate keys",
                                                  "mode": "hybrid"})
        got = retrieve(request, conn=db, dense_conn=side, settings=load_settings())
        # Then the answer is whole, the second connection never used, and the slot still the busy worker's
        assert any(h.dense_rank is not None for h in got.hits)
        assert statements == []
        assert not service._slots.acquire(blocking=False)
        service._slots.release()
        # and with the worker free again, the second connection serves the dense side
        retrieve(request, conn=db, dense_conn=side, settings=load_settings())
        assert statements
    finally:
        side.close()


def test_query_statistics_equal_the_separate_reads(db, tenant_id: str) -> None:
    _store(db, tenant_id, "keys.md", SMALL_CORPUS[:3])
    empty = f"t-{uuid.uuid4().hex[:12]}"  # a tenant with no chunks (no lexical_stats row)
    for tenant in (tenant_id, empty):
        for query in ("rotate the expired API keys", "the and of", "zzzunknownterm"):
            with tenant_transaction(tenant, db):
                terms, stats = chunk_store.query_statistics(db, tenant, query_text(query))
                lexemes = chunk_store.query_lexemes(db, query_text(query))
                assert sorted(terms) == sorted(lexemes), (tenant, query)
                assert stats == chunk_store.lexical_stats(db, tenant, lexemes), (tenant, query)


def test_hnsw_scan_settings_come_from_configuration() -> None:
    from stratus.retrieval.dense import scan_settings

    scan = scan_settings(load_settings(hnsw_ef_search=64, hnsw_iterative_scan="strict_order",
                                       hnsw_max_scan_tuples=5000, hnsw_fetch=80))
    assert scan == chunk_store.HnswScan(ef_search=64, iterative_scan="strict_order", max_scan_tuples=5000, fetch=80)
    with pytest.raises(ValueError, match="iterative_scan"):
        chunk_store.HnswScan(iterative_scan="sideways")


def test_dense_query_uses_the_hnsw_index(db, pg_url: str, tenant_id: str) -> None:
    # Given a tenant large enough that an index beats a scan (planner statistics up to date)
    rng = np.random.default_rng(3)
    noise = rng.normal(size=(1000, 384)).astype(np.float32)
    _store(db, tenant_id, "bulk.txt", [f"row {i}" for i in range(1000)], vectors=noise)
    _analyze(pg_url)
    with tenant_transaction(tenant_id, db):
        # Then the query, as written, is planned on the partial expression index
        plan = chunk_store.explain_dense(db, tenant_id, MODEL, chunk_store.ChunkScope())
        assert "Index Scan using chunks_embedding_minilm" in plan, plan


def test_invalid_requests_name_the_field() -> None:
    from stratus.retrieval.models import parse_request

    cases = {
        "mode": {"tenant_id": "acme", "query": "x", "mode": "fuzzy"},
        "filters.document_ids.0": {"tenant_id": "acme", "query": "x", "filters": {"document_ids": ["nope"]}},
        "filters.colour": {"tenant_id": "acme", "query": "x", "filters": {"colour": "red"}},
        "k": {"tenant_id": "acme", "query": "x", "k": 0},
        "query": {"tenant_id": "acme", "query": "   "},
        "tenant_id": {"tenant_id": "Not A Tenant", "query": "x"},
    }
    for field, event in cases.items():
        with pytest.raises(InvalidInput) as err:
            parse_request(event)
        assert err.value.field == field, (field, err.value.message)
        assert field in err.value.message


def test_handler_round_trip(pg_url: str, tenant_id: str) -> None:

    conn = connect(pg_url)
    try:
        _store(conn, tenant_id, "handbook/keys.md", SMALL_CORPUS)
    finally:
        conn.close()
    event = json.loads((ROOT / "events" / "retrieve.json").read_text())
    event["tenant_id"] = tenant_id
    app = load_function_app("retrieve")

    out = app.handler(event, None)

    json.dumps(out)  # plain JSON for Step Functions
    assert out["mode"] == event["mode"] and 0 < len(out["hits"]) <= event["k"]
    top = out["hits"][0]
    assert top["source_key"] == "handbook/keys.md" and "expired" in top["text"].lower()
    assert set(out["timings_ms"]) >= {"embed", "lexical", "dense", "fuse", "fetch", "total"}
    # The hybrid's dense side ran on this thread's second kept connection, which closes with the first
    from stratus.db import connection

    kept, side = connection._local.conn, getattr(connection._local, "side", None)
    assert side is not None and side is not kept and not side.closed
    connection.close_connection()
    assert kept.closed and side.closed
    with pytest.raises(InvalidInput):
        app.handler({**event, "mode": "nope"}, None)
