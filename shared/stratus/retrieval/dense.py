"""Dense retrieval: the query embedded with the index's own model, nearest chunks by cosine, on that model's
partial HNSW index (the query is cast to the vector's dimension, as the index is: stratus.db.vector_index)."""

from __future__ import annotations

import numpy as np

from stratus.config import Settings
from stratus.db import chunks as chunk_store
from stratus.db.chunks import ChunkScope, HnswScan


def scan_settings(settings: Settings) -> HnswScan:
    """How the HNSW index is walked, from configuration (docs/retrieval.md has the measurements)."""
    return HnswScan(ef_search=settings.hnsw_ef_search, iterative_scan=settings.hnsw_iterative_scan,
                    max_scan_tuples=settings.hnsw_max_scan_tuples, fetch=settings.hnsw_fetch)


def search(
    conn: chunk_store.Connection,
    tenant_id: str,
    vector: np.ndarray,
    model: str,
    scope: ChunkScope,
    *,
    limit: int,
    scan: HnswScan,
    side: bool = False,
) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity), most similar first. `side`: the model's vectors are in
    chunk_embeddings (stratus.reindex.models.stored_in_chunk_rows)."""
    rows = chunk_store.dense_search(conn, tenant_id, vector, model, scope, limit=limit, scan=scan, side=side)
    return [(cid, 1.0 - distance) for cid, distance in rows]
