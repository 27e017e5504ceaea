"""Sentence vectors stored with their chunk (migration 0020): written in the ingest transaction, read by
the groundedness rail for the passages an answer cites."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import psycopg
from pgvector import HalfVector


def digest(sentence: str) -> bytes:
    """A sentence's identity in the table: ingestion and the rail split the same text the same way."""
    return hashlib.blake2b(sentence.encode("utf-8"), digest_size=16).digest()


def store(conn: psycopg.Connection, tenant_id: str, document_id: str, version: int, *,
          sentences: Sequence[Sequence[str]], vectors: Sequence[np.ndarray], embedding_model: str) -> int:
    """Rows for a document version just written: `sentences[i]` and `vectors[i]` belong to the chunk of
    ordinal i. Returns the number of rows written."""
    ids: dict[int, int] = dict(conn.execute(
        "SELECT ordinal, id FROM chunks WHERE document_id = %s AND document_version = %s",
        [document_id, version]).fetchall())
    rows = [
        (ids[ordinal], tenant_id, n, digest(text), embedding_model, HalfVector(vector))
        for ordinal, (texts, matrix) in enumerate(zip(sentences, vectors, strict=True))
        for n, (text, vector) in enumerate(zip(texts, matrix, strict=True))
    ]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO chunk_sentences (chunk_id, tenant_id, ordinal, digest, embedding_model, embedding)"
            " VALUES (%s, %s, %s, %s, %s, %s)", rows)
    return len(rows)


def load(conn: psycopg.Connection, chunk_ids: Iterable[int], embedding_model: str) -> dict[bytes, np.ndarray]:
    """digest -> float32 vector for every stored sentence of `chunk_ids` (in a tenant transaction: RLS
    keeps other tenants' rows out whatever ids are asked for)."""
    ids = sorted(set(chunk_ids))
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT digest, embedding FROM chunk_sentences WHERE chunk_id = ANY(%s) AND embedding_model = %s",
        [ids, embedding_model]).fetchall()
    return {bytes(d): np.asarray(v.to_numpy(), dtype=np.float32) for d, v in rows}
