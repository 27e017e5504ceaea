"""Scale-up data for retrieval benchmarks, honest about what is real.

Embedding 100k chunks of real text takes hours on 2 cores, so a large table is built from a few
thousand REAL chunks (text and embedding, as ingested): each synthetic chunk's text mixes sentences of
two real chunks (two thirds of one, a third of the other) and its vector is the same mix of their real
embeddings plus small Gaussian noise, re-normalised. Vectors
keep the clustered structure of real text (uniform random vectors would not: HNSW recall on those is
meaningless), and lexical statistics stay realistic. The rows go straight in with COPY, the HNSW index
is built afterwards (as one would for a bulk load), and the tenant's BM25 statistics are recomputed.
"""

from __future__ import annotations

import re
import uuid

import numpy as np
import psycopg

from stratus import lexical_analysis
from stratus.db.connection import tenant_transaction

MODEL = "all-MiniLM-L6-v2-int8"
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


def synthesize(texts: list[str], vectors: np.ndarray, n: int, *, noise: float = 0.01,
               seed: int = 7) -> tuple[list[str], np.ndarray, list[int]]:
    """n chunks around the real ones; returns texts, unit vectors, and the section label (0-9) of each."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, len(texts), size=n)
    other = rng.integers(0, len(texts), size=n)
    # The vector follows the text's make-up (two thirds of one real chunk, one third of another) plus
    # noise: neighbours spread the way mixed real text does, instead of tight balls of near-duplicates
    # (which no real corpus has and which HNSW's neighbour pruning handles badly).
    out_vecs = (2 / 3) * vectors[base] + (1 / 3) * vectors[other]
    out_vecs += rng.normal(0, noise, size=(n, vectors.shape[1])).astype(np.float32)
    out_vecs /= np.linalg.norm(out_vecs, axis=1, keepdims=True)
    sentences = [_SENTENCE.split(t) for t in texts]
    out_texts = []
    for b, o in zip(base, other, strict=True):
        a, c = sentences[b], sentences[o]
        out_texts.append(" ".join(a[: max(1, len(a) * 2 // 3)] + c[: max(1, len(c) // 3)]))
    return out_texts, out_vecs.astype(np.float32), [int(x) for x in rng.integers(0, 10, size=n)]


def load_table(admin_url: str, tenant_id: str, texts: list[str], vectors: np.ndarray,
               sections: list[int]) -> None:
    """Bulk-load chunks for `tenant_id` (as the table owner), rebuild the HNSW index and BM25 stats."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
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
                vec_text = "[" + ",".join(f"{x:.6f}" for x in vec) + "]"
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
        conn.execute(
            "CREATE INDEX chunks_embedding_minilm ON chunks USING hnsw ((embedding::vector(384)) vector_cosine_ops)"
            " WITH (m = 16, ef_construction = 64) WHERE embedding_model = 'all-MiniLM-L6-v2-int8'")
        conn.execute("ANALYZE chunks")
        conn.execute("ANALYZE lexical_terms")


def hnsw_recall(conn: psycopg.Connection, tenant_id: str, queries: np.ndarray, *, k: int = 10,
                ef_search: int = 100, section: str | None = None) -> float:
    """Mean recall@k of the HNSW index (iterative scan) against an exact scan, same filter."""
    flt = "AND metadata @> %(meta)s::jsonb" if section else ""
    params_base = {"tenant": tenant_id, "k": k, "meta": f'{{"section": "{section}"}}'}
    hits = 0
    for q in queries:
        params = {**params_base, "q": np.asarray(q, dtype=np.float32)}
        with tenant_transaction(tenant_id, conn):
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
            approx = {r[0] for r in conn.execute(
                "SELECT id FROM chunks WHERE tenant_id = %(tenant)s AND embedding_model = 'all-MiniLM-L6-v2-int8' "
                f"{flt} ORDER BY (embedding::vector(384)) <=> %(q)s::vector(384) LIMIT %(k)s", params)}
        with tenant_transaction(tenant_id, conn):
            # Ordering by the un-cast column cannot use the expression index: an exact scan.
            exact = {r[0] for r in conn.execute(
                "SELECT id FROM chunks WHERE tenant_id = %(tenant)s AND embedding_model = 'all-MiniLM-L6-v2-int8' "
                f"{flt} ORDER BY embedding <=> %(q)s::vector LIMIT %(k)s", params)}
        hits += len(approx & exact)
    return hits / (k * len(queries))
