"""Dense retrieval: the query embedded with the index's own model, nearest chunks by cosine."""

from __future__ import annotations

import numpy as np

from stratus.db import chunks as chunk_store
from stratus.db.chunks import ChunkScope


def search(
    conn: chunk_store.Connection,
    tenant_id: str,
    vector: np.ndarray,
    model: str,
    scope: ChunkScope,
    *,
    limit: int,
    ef_search: int,
) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity), most similar first."""
    rows = chunk_store.dense_search(conn, tenant_id, vector, model, scope, limit=limit, ef_search=ef_search)
    return [(cid, 1.0 - distance) for cid, distance in rows]
