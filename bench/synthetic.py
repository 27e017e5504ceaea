"""Scale-up data for retrieval benchmarks, honest about what is real.

A large table is built from a few thousand REAL chunks (as ingested): synthetic chunk i mixes the
sentences of two real chunks (two thirds of one, a third of the other), chosen by a seeded generator so
that item i is the same whatever the size asked for (sizes are ranges of one stream: the 10k tenant's
rows are never in the 100k tenant's). Every synthetic text is then embedded FOR REAL with the project's
embedder, so HNSW recall is measured on embeddings of real text, never on made-up vectors.

Embedding 100k chunks takes a long time on 2 cores (see bench/results/retrieval_scale.json), so vectors
are cached under .stratus/embedding-cache/<model>/ keyed by the SHA-256 of the text: a rerun only embeds
texts it has not seen. The rows go in with COPY, the HNSW index is built afterwards (as one would for a
bulk load; its build time and size are recorded), and the tenant's BM25 statistics are recomputed.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import psycopg

from stratus import lexical_analysis
from stratus.db import documents
from stratus.db.connection import tenant_transaction
from stratus.embeddings import Embedder

MODEL = "all-MiniLM-L6-v2-int8"
CACHE_ROOT = Path(__file__).resolve().parents[1] / ".stratus" / "embedding-cache"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def load_base(conn: psycopg.Connection, tenant_id: str) -> tuple[list[str], np.ndarray]:
    """Texts and embeddings of a tenant's real (ingested) chunks."""
    with tenant_transaction(tenant_id, conn):
        rows = conn.execute(
            "SELECT text, embedding FROM chunks WHERE tenant_id = %s ORDER BY id", [tenant_id]
        ).fetchall()
    texts = [r[0] for r in rows]
    vectors = np.vstack([np.asarray(r[1].to_numpy(), dtype=np.float32) for r in rows])
    return texts, vectors


def synthesize(texts: list[str], start: int, n: int, *, seed: int = 7) -> tuple[list[str], list[int]]:
    """Synthetic items [start, start + n): their texts and section labels (0-9).

    Item i depends only on `texts`, `seed` and i, so different ranges never share an item and a cache
    filled for one size serves every smaller one."""
    picks = np.random.default_rng(seed).integers(0, len(texts), size=(start + n, 2))[start:]
    sections = np.random.default_rng(seed + 1).integers(0, 10, size=start + n)[start:]
    sentences = [_SENTENCE.split(t) for t in texts]
    out = []
    for b, o in picks:
        a, c = sentences[b], sentences[o]
        out.append(" ".join(a[: max(1, len(a) * 2 // 3)] + c[: max(1, len(c) // 3)]))
    return out, [int(s) for s in sections]


class EmbeddingCache:
    """Vectors by text hash for one model, in append-only .npz shards (a crash loses one shard at most)."""

    def __init__(self, model: str, root: Path = CACHE_ROOT) -> None:
        self.dir = root / model
        self.dir.mkdir(parents=True, exist_ok=True)
        self._vectors: dict[bytes, np.ndarray] = {}
        for shard in sorted(self.dir.glob("*.npz")):
            try:
                with np.load(shard) as data:
                    self._vectors.update(zip((bytes(k) for k in data["keys"]), data["vectors"], strict=True))
            except (OSError, ValueError, KeyError):  # a torn shard is re-embedded, not trusted
                shard.unlink(missing_ok=True)

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.sha256(text.encode("utf-8")).hexdigest().encode("ascii")  # no NUL bytes: "S" keeps it

    def missing(self, texts: Iterable[str]) -> list[str]:
        seen: set[bytes] = set()
        out = []
        for t in texts:
            k = self.key(t)
            if k not in self._vectors and k not in seen:
                seen.add(k)
                out.append(t)
        return out

    def add(self, texts: list[str], vectors: np.ndarray) -> None:
        keys = [self.key(t) for t in texts]
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        tmp = self.dir / f"{name}.tmp.npz"
        np.savez(tmp, keys=np.array(keys, dtype="S64"), vectors=vectors.astype(np.float32))
        tmp.rename(self.dir / f"{name}.npz")
        self._vectors.update(zip(keys, vectors.astype(np.float32), strict=True))

    def get(self, texts: list[str]) -> np.ndarray:
        return np.vstack([self._vectors[self.key(t)] for t in texts])


def embed_cached(embedder: Embedder, texts: list[str], *, batch: int = 32, shard: int = 1024,
                 progress: Callable[[int, int, float], None] | None = None,
                 cache_root: Path = CACHE_ROOT) -> tuple[np.ndarray, dict]:
    """Vectors for `texts` (cache first, the embedder for the rest). Returns them and what it cost:
    {"cached": n, "embedded": n, "embed_s": s}. Texts are embedded in order, `shard` at a time (sorted by
    length inside a shard so a batch pads little), and each shard is saved before the next starts."""
    cache = EmbeddingCache(embedder.model_name, cache_root)
    todo = cache.missing(texts)
    started = time.perf_counter()
    done = 0
    for i in range(0, len(todo), shard):
        part = sorted(todo[i:i + shard], key=len)
        vecs = np.vstack([embedder.embed(part[j:j + batch]) for j in range(0, len(part), batch)])
        cache.add(part, vecs)
        done += len(part)
        if progress is not None:
            progress(done, len(todo), time.perf_counter() - started)
    cost = {"cached": len(texts) - len(todo), "embedded": len(todo),
            "embed_s": round(time.perf_counter() - started, 1)}
    return cache.get(texts), cost


def load_table(admin_url: str, tenant_id: str, texts: list[str], vectors: np.ndarray,
               sections: list[int], *, postings: bool = True) -> None:
    """Bulk-load chunks for `tenant_id` (as the table owner) with BM25 statistics and, unless `postings` is
    False (a caller that times the rebuild itself), its lexical impact postings; the HNSW index is dropped
    first and built again by build_index() once every tenant is loaded."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (id) VALUES (%s) ON CONFLICT DO NOTHING", [tenant_id])
        doc_id = uuid.uuid4()
        conn.execute(
            "INSERT INTO documents (id, tenant_id, source_key, status, version, chunk_count)"
            " VALUES (%s, %s, %s, 'ready', 1, %s)", [doc_id, tenant_id, f"synthetic/{tenant_id}", len(texts)])
        conn.execute("DROP INDEX IF EXISTS chunks_embedding_minilm")
        with conn.cursor().copy(
            "COPY chunks (tenant_id, document_id, document_version, ordinal, text, metadata, token_count,"
            " lexemes, lexeme_count, embedding_model, embedding) FROM STDIN"
        ) as copy:
            for i, (text, vec, section) in enumerate(zip(texts, vectors, sections, strict=True)):
                vec_text = "[" + ",".join(f"{x:.7g}" for x in vec) + "]"
                copy.write_row((tenant_id, doc_id, 1, i, text, f'{{"section": "s{section}"}}', 0, "",
                                0, MODEL, vec_text))
        conn.execute(
            "UPDATE chunks SET lexemes = to_tsvector(%s::regconfig, text) WHERE document_id = %s",
            [lexical_analysis.TS_CONFIG, doc_id])
        conn.execute(
            "UPDATE chunks SET lexeme_count = (SELECT coalesce(sum(coalesce(array_length(u.positions, 1), 1)), 0)"
            " FROM unnest(lexemes) u) WHERE document_id = %s", [doc_id])
        conn.execute(
            "INSERT INTO lexical_stats (tenant_id, chunk_count, total_length)"
            " SELECT %s, count(*), sum(lexeme_count) FROM chunks WHERE tenant_id = %s"
            " ON CONFLICT (tenant_id) DO UPDATE SET chunk_count = EXCLUDED.chunk_count,"
            " total_length = EXCLUDED.total_length", [tenant_id, tenant_id])
        conn.execute("DELETE FROM lexical_terms WHERE tenant_id = %s", [tenant_id])
        conn.execute(
            "INSERT INTO lexical_terms (tenant_id, term, df) SELECT %s, u.lexeme, count(*)"
            " FROM chunks c, unnest(c.lexemes) u WHERE c.tenant_id = %s GROUP BY u.lexeme",
            [tenant_id, tenant_id])
        if postings:
            with conn.transaction():
                documents.rebuild_postings(conn, tenant_id)
