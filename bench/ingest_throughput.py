"""Ingestion throughput (chunks/s) against bare embedding throughput of the same chunks, same run.

Corpus: real HTML pages (the standard library's pydoc pages, see bench/corpus.py). Bare embedding is
the embedder alone over the exact chunk texts ingestion produces (same batching); ingestion is the
whole path — extract, chunk, embed, one transaction per document with BM25 statistics — into a fresh
tenant. The two alternate over several rounds and the medians are compared.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.common import record
from stratus.config import get_settings
from stratus.db.records import SourceObject
from stratus.embeddings import get_embedder
from stratus.ingest.chunking import chunk_document
from stratus.ingest.extract import extract
from stratus.ingest.pipeline import embed_texts, ingest_document


def chunk_texts(files: list[Path]) -> list[str]:
    settings, embedder = get_settings(), get_embedder(get_settings().embedding_model)
    texts: list[str] = []
    for f in files:
        doc = extract(f.read_bytes(), f.name)
        texts += [c.text for c in chunk_document(doc, embedder, max_tokens=settings.chunk_max_tokens,
                                                 overlap_tokens=settings.chunk_overlap_tokens)]
    return texts


def ingest_all(files: list[Path], tenant_id: str) -> int:
    chunks = 0
    for f in files:
        src = SourceObject(tenant_id=tenant_id, key=f.name, etag=uuid.uuid4().hex,
                           last_modified=datetime.now(UTC), size=f.stat().st_size, content_type="text/html")
        result = ingest_document(tenant_id, f.name, f.read_bytes(), src)
        if result.status != "ingested":
            raise RuntimeError(f"{f.name}: {result.status} {result.reason}")
        chunks += result.chunk_count or 0
    return chunks


def main(files: list[Path], rounds: int = 3) -> dict:
    settings = get_settings()
    embedder = get_embedder(settings.embedding_model)
    texts = chunk_texts(files)
    embedder.embed(texts[:8])  # load the model outside the timings
    bare, full = [], []
    for r in range(rounds):
        t = time.perf_counter()
        embed_texts(embedder, texts, settings.embed_batch_size)
        bare.append(len(texts) / (time.perf_counter() - t))
        t = time.perf_counter()
        n = ingest_all(files, f"bench-ingest-{r}-{uuid.uuid4().hex[:6]}")
        full.append(n / (time.perf_counter() - t))
        print(f"round {r + 1}: bare {bare[-1]:.1f} chunks/s, ingestion {full[-1]:.1f} chunks/s ({n} chunks)")
    out = {
        "documents": len(files), "bytes": sum(f.stat().st_size for f in files), "chunks": len(texts),
        "rounds": rounds, "bare_embedding_chunks_per_s": round(statistics.median(bare), 2),
        "ingestion_chunks_per_s": round(statistics.median(full), 2),
        "all_rounds": {"bare": [round(x, 2) for x in bare], "ingestion": [round(x, 2) for x in full]},
        "chunk_max_tokens": settings.chunk_max_tokens, "batch_size": settings.embed_batch_size,
    }
    out["ratio"] = round(out["ingestion_chunks_per_s"] / out["bare_embedding_chunks_per_s"], 3)
    out["target_ratio"] = 0.9
    print(f"ingestion/bare = {out['ratio']} (target >= 0.9)")
    record("ingest_throughput", out)
    return out
