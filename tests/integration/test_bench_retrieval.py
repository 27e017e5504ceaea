"""The retrieval-scale benchmark in a small configuration: two tiny tenants scaled from a few real chunks,
embedded for real (through a private vector cache), latency through retrieve(), recall against exact search."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

from bench import retrieval_scale
from bench.synthetic import EmbeddingCache, embed_cached
from stratus.db import documents
from stratus.db.connection import tenant_transaction
from stratus.db.records import ChunkDraft, SourceObject
from stratus.embeddings import get_embedder

MODEL = "all-MiniLM-L6-v2-int8"
BASE = [
    f"The {topic} module handles {verb} requests. It keeps a cache of {thing} entries. Errors are logged "
    f"with the {thing} name. Retries back off exponentially."
    for topic in ("billing", "ingest", "search", "gateway", "keys", "audit")
    for verb, thing in (("upload", "object"), ("rotation", "key"), ("query", "index"), ("export", "report"))
]


def _seed_base(db, tenant_id: str) -> None:
    vectors = get_embedder(MODEL).embed(BASE)
    drafts = [ChunkDraft(ordinal=i, text=t, token_count=len(t.split())) for i, t in enumerate(BASE)]
    with tenant_transaction(tenant_id, db):
        documents.ensure_tenant(db, tenant_id)
        doc = documents.lock_document(db, tenant_id, "base.txt")
        documents.replace_version(db, doc, SourceObject(tenant_id=tenant_id, key="base.txt"), title="base",
                                  content_hash=uuid.uuid4().hex, chunks=drafts, embeddings=vectors,
                                  embedding_model=MODEL)


def test_the_benchmark_measures_latency_and_recall_on_real_embeddings(db, pg_url: str, tenant_id: str,
                                                                      tmp_path: Path) -> None:
    _seed_base(db, tenant_id)
    prefix = f"b{uuid.uuid4().hex[:8]}"
    result = retrieval_scale.main(pg_url, tenant_id, sizes=(60, 150), n_queries=6, tenant_prefix=prefix,
                                  record_as=None, cache_root=tmp_path)
    assert set(result["sizes"]) == {"60", "150"}
    for entry in result["sizes"].values():
        modes = {"lexical", "dense", "hybrid", "hybrid_one_connection", "hybrid_metadata_filter"}
        assert modes <= set(entry["latency"])
        recall = entry["hnsw_recall_at_10"]["default"]
        for flt in ("tenant_filter", "tenant_and_metadata_filter"):
            for qset in ("A", "B"):
                assert 0.0 <= recall[flt][qset]["as_retrieve_asks"]["recall"] <= 1.0
        # At this size a default scan finds the exact neighbours
        assert recall["tenant_filter"]["A"]["as_retrieve_asks"]["recall"] == 1.0
    assert [g["rows"] for g in result["index_growth"]][-1] >= 210
    assert "hnsw_recall_at_10_with_filters" not in result["targets"]  # targets are for 100k
    # Every synthetic text was embedded once and cached: a rerun embeds nothing
    assert result["sizes"]["60"]["embedding"]["embedded"] > 0
    texts, _ = retrieval_scale.synthesize(BASE, 0, 60)
    again, cost = embed_cached(get_embedder(MODEL), texts, cache_root=tmp_path)
    assert cost["embedded"] == 0 and again.shape == (60, 384)
    assert np.allclose(again, get_embedder(MODEL).embed(texts[:4]).tolist() + again[4:].tolist(), atol=1e-5)
    assert len(list((tmp_path / MODEL).glob("*.npz"))) >= 1 and EmbeddingCache(MODEL, tmp_path).missing(texts) == []
