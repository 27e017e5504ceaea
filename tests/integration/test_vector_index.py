"""Vectors of any dimension in the shared `chunks.embedding` column, each model with its own partial HNSW
index (stratus.db.vector_index), and the dense query written so the planner uses it: a 1,024-dimension
model on `vector`, a 3,072-dimension one on `halfvec` (over pgvector's 2,000-dimension HNSW limit)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from stratus.db import chunks as chunk_store
from stratus.db import documents
from stratus.db.connection import connect, tenant_transaction
from stratus.db.records import ChunkDraft, SourceObject
from stratus.db.vector_index import ensure_model_index, index_name, model_dimensions, vector_type
from stratus.errors import Unsupported

pytestmark = pytest.mark.integration
TITAN = "amazon.titan-embed-text-v2:0/1024"
LARGE = "text-embedding-3-large/3072"


def _store(conn, tenant_id: str, model: str, vectors: np.ndarray) -> None:
    drafts = [ChunkDraft(ordinal=i, text=f"row {i}", token_count=2, metadata={}) for i in range(len(vectors))]
    with tenant_transaction(tenant_id, conn):
        documents.ensure_tenant(conn, tenant_id)
        doc = documents.lock_document(conn, tenant_id, f"{model}.txt")
        documents.replace_version(conn, doc, SourceObject(tenant_id=tenant_id, key=f"{model}.txt"), title="t",
                                  content_hash=uuid.uuid4().hex, chunks=drafts, embeddings=vectors,
                                  embedding_model=model)


def _owner(pg_url: str):
    conn = connect(pg_url, app_role=False)
    conn.autocommit = True
    return conn


def _unit(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    v = rng.normal(size=(n, dims)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_index_names_and_types_follow_model_and_dimension() -> None:
    assert index_name("all-MiniLM-L6-v2-int8", 384) == "chunks_embedding_minilm"
    names = {index_name(m, d) for m, d in [(TITAN, 1024), ("amazon.titan-embed-text-v2:0/512", 512), (LARGE, 3072)]}
    assert len(names) == 3 and all(len(n) <= 63 and n.startswith("chunks_emb_") for n in names)
    assert model_dimensions(TITAN) == 1024 and model_dimensions("all-MiniLM-L6-v2-int8") == 384
    assert vector_type(2000) == "vector" and vector_type(2001) == "halfvec"
    with pytest.raises(ValueError, match="4000"):
        vector_type(4097)


def test_a_1024_dimension_model_gets_its_own_index_and_the_dense_query_uses_it(db, pg_url, tenant_id) -> None:
    # Given a tenant with 1,000 Titan vectors and 1,000 MiniLM ones in the same column
    rng = np.random.default_rng(7)
    titan = _unit(rng, 1000, 1024)
    _store(db, tenant_id, TITAN, titan)
    _store(db, tenant_id, "all-MiniLM-L6-v2-int8", _unit(rng, 1000, 384))
    with _owner(pg_url) as owner:
        # When the model's index is ensured (twice: the second call finds it)
        name = ensure_model_index(owner, TITAN, 1024)
        assert ensure_model_index(owner, TITAN, 1024) == name
        owner.execute("ANALYZE chunks")
        valid = owner.execute("SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                              " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s", [name]).fetchone()
    assert valid is not None and valid[0] and "vector(1024)" in valid[1] and "hnsw" in valid[1]
    assert f"embedding_model = '{TITAN}'" in valid[1]
    with tenant_transaction(tenant_id, db):
        # Then the dense query, cast to the model's dimension, is planned on that index
        plan = chunk_store.explain_dense(db, tenant_id, TITAN, chunk_store.ChunkScope())
        assert f"Index Scan using {name}" in plan, plan
        # And it finds a stored vector as its own nearest neighbour, among this model's rows only
        rows = chunk_store.dense_search(db, tenant_id, titan[42], TITAN, chunk_store.ChunkScope(), limit=5,
                                        scan=chunk_store.HnswScan(ef_search=100))
        ids = [r[0] for r in rows]
        first = db.execute("SELECT ordinal, embedding_model FROM chunks WHERE id = %s", [ids[0]]).fetchone()
        assert first == (42, TITAN) and rows[0][1] == pytest.approx(0.0, abs=1e-5)
        models = {r[0] for r in db.execute("SELECT embedding_model FROM chunks WHERE id = ANY(%s)", [ids])}
        assert models == {TITAN}


def test_over_2000_dimensions_the_index_is_halfvec(db, pg_url, tenant_id) -> None:
    rng = np.random.default_rng(8)
    vectors = _unit(rng, 300, 3072)
    _store(db, tenant_id, LARGE, vectors)
    with _owner(pg_url) as owner:
        name = ensure_model_index(owner, LARGE, 3072)
        owner.execute("ANALYZE chunks")
        definition = owner.execute("SELECT pg_get_indexdef(%s::regclass)", [name]).fetchone()
    assert definition is not None and "halfvec(3072)" in definition[0] and "halfvec_cosine_ops" in definition[0]
    # Steer the planner off the plain scans (300 rows are few; a large tenant gets the index on its own)
    db.execute("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
    db.commit()
    try:
        with tenant_transaction(tenant_id, db):
            assert f"Index Scan using {name}" in chunk_store.explain_dense(db, tenant_id, LARGE,
                                                                           chunk_store.ChunkScope())
            rows = chunk_store.dense_search(db, tenant_id, vectors[7], LARGE, chunk_store.ChunkScope(), limit=3,
                                            scan=chunk_store.HnswScan())
            assert db.execute("SELECT ordinal FROM chunks WHERE id = %s", [rows[0][0]]).fetchone() == (7,)
    finally:
        db.execute("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort")
        db.commit()


def test_a_query_of_the_wrong_dimension_is_refused_naming_the_model(db, tenant_id) -> None:
    with pytest.raises(Unsupported, match="512 dimensions"), tenant_transaction(tenant_id, db):
        chunk_store.dense_search(db, tenant_id, np.ones(512, dtype=np.float32), TITAN, chunk_store.ChunkScope(),
                                 limit=3, scan=chunk_store.HnswScan())


def test_ensure_model_index_needs_autocommit(pg_url) -> None:
    with connect(pg_url, app_role=False) as owner, pytest.raises(ValueError, match="autocommit"):
        ensure_model_index(owner, TITAN, 1024)
