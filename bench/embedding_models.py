"""Offline embedding models compared: retrieval quality on the labelled sets, ingest speed, query latency.

    python -m bench.run embedding_models
    python -m bench.embedding_models [--model NAME ...] [--adapter MODULE:FACTORY ...] [--url URL] [--out FILE]

Quality: each gold set (evals/retrieval, evals/retrieval-stdlib) is ingested into a fresh tenant with the
model and scored dense-only and hybrid (nDCG@10, recall@10), as `stratus eval retrieval` scores them. Every
model gets the same chunks (the chunker counts tokens with the default model's tokenizer), so only the
vectors differ. The sets are for reporting: nothing is tuned on them.
Speed: bare embedding of real chunks (the standard library's pydoc pages, bench/corpus.py) in the
ingestion's batches, median chunks/s over ROUNDS that alternate the models; single-query embedding
latency over the gold queries.
`--adapter` adds a model that is not in the registry (a candidate installed elsewhere): FACTORY() returns an
embedder, or a (documents, queries) pair for models that embed the two sides differently.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import ROOT, database, percentile, record

SETS = {
    name: (ROOT / "evals" / name / "corpus", ROOT / "evals" / name / "queries.jsonl")
    for name in ("retrieval", "retrieval-stdlib")
}
MODELS = ("all-MiniLM-L6-v2-int8", "paraphrase-MiniLM-L3-v2")  # the registry's offline models
ROUNDS = int(os.environ.get("BENCH_EMBED_ROUNDS", "3"))
SPEED_CHUNKS = int(os.environ.get("BENCH_EMBED_CHUNKS", "192"))
SPEED_PAGES = 24


def quality(documents: Any, queries_embedder: Any, corpus: Path, queries_file: Path) -> dict[str, Any]:
    from stratus.config import get_settings
    from stratus.db.records import SourceObject
    from stratus.embeddings import get_embedder
    from stratus.ingest.pipeline import ingest_document
    from stratus.retrieval.models import RetrieveRequest
    from stratus.retrieval.service import retrieve
    from stratus_tools.evals.retrieval import (
        CHUNKS_FETCHED,
        DOCS_SCORED,
        _drop_tenant,
        corpus_files,
        distinct_documents,
        load_queries,
        score_ranker,
    )

    # model_copy, not validation: a candidate outside the registry is not a configurable model name
    settings = get_settings().model_copy(update={"embedding_model": documents.model_name})
    chunker = get_embedder(get_settings().embedding_model)
    files = corpus_files(corpus)
    queries = load_queries(queries_file, files)
    tenant = f"bench-emb-{uuid.uuid4().hex[:10]}"
    chunker_shim = _SameChunks(documents, chunker)
    try:
        for key, path in files.items():
            data = path.read_bytes()
            res = ingest_document(
                tenant,
                key,
                data,
                SourceObject(tenant_id=tenant, key=key, size=len(data)),
                settings=settings,
                embedder=chunker_shim,
            )
            if res.status != "ingested":
                raise RuntimeError(f"{path}: {res.status} {res.reason}")
        out: dict[str, Any] = {}
        for mode in ("dense", "hybrid"):

            def ask(q: str, mode: str = mode) -> list[str]:
                hits = retrieve(
                    RetrieveRequest(tenant_id=tenant, query=q, k=CHUNKS_FETCHED, mode=mode),
                    settings=settings,
                    embedder=queries_embedder,
                ).hits
                return distinct_documents(h.source_key for h in hits)[:DOCS_SCORED]

            row = score_ranker(queries, mode, ask)
            out[mode] = {k: row[k] for k in ("ndcg@10", "recall@10", "mrr@10", "latency_p50_ms")}
        out["queries"] = len(queries)
        return out
    finally:
        _drop_tenant(tenant)


class _SameChunks:
    """`documents`' vectors over the default model's token counts: every model is scored on one chunking."""

    def __init__(self, documents: Any, chunker: Any) -> None:
        self.model_name, self.dimensions = documents.model_name, documents.dimensions
        self.max_tokens = chunker.max_tokens
        self.embed, self.count_tokens, self.token_offsets = documents.embed, chunker.count_tokens, chunker.token_offsets


def speed(models: dict[str, tuple[Any, Any]], texts: list[str], queries: list[str]) -> dict[str, dict[str, Any]]:
    """Rounds alternate the models, so a change in the machine's load hits every model alike."""
    from stratus.config import get_settings
    from stratus.ingest.pipeline import embed_texts

    batch = get_settings().embed_batch_size
    for documents, queries_embedder in models.values():  # model loads stay out of the timings
        documents.embed(texts[:4])
        queries_embedder.embed(queries[:1])
    rates: dict[str, list[float]] = {name: [] for name in models}
    latencies: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(ROUNDS):
        for name, (documents, queries_embedder) in models.items():
            start = time.perf_counter()
            embed_texts(documents, texts, batch)
            rates[name].append(len(texts) / (time.perf_counter() - start))
            for q in queries:
                start = time.perf_counter()
                queries_embedder.embed([q])
                latencies[name].append((time.perf_counter() - start) * 1000)
    return {
        name: {
            "chunks_per_s": round(statistics.median(rates[name]), 2),
            "all_rounds": [round(r, 2) for r in rates[name]],
            "query_embed_p50_ms": round(percentile(latencies[name], 50), 2),
            "query_embed_p95_ms": round(percentile(latencies[name], 95), 2),
        }
        for name in models
    }


def speed_texts() -> list[str]:
    import random

    from bench.corpus import write_corpus
    from bench.ingest_throughput import chunk_texts

    texts = chunk_texts(write_corpus(ROOT / ".stratus" / "bench-embedding-models" / "pages", limit=SPEED_PAGES))
    return random.Random(0).sample(texts, min(SPEED_CHUNKS, len(texts)))


def candidates(models: Sequence[str], adapters: Sequence[str]) -> dict[str, tuple[Any, Any]]:
    from stratus.embeddings import get_embedder

    out: dict[str, tuple[Any, Any]] = {m: (get_embedder(m), get_embedder(m)) for m in models}
    for spec in adapters:
        module, _, attr = spec.partition(":")
        made = getattr(importlib.import_module(module), attr)()
        pair = made if isinstance(made, tuple) else (made, made)
        out[pair[0].model_name] = pair
    return out


@contextmanager
def dense_search_for(model: str, dimensions: int) -> Iterator[str]:
    """A model without its partial HNSW index (a migration adds one when a model is offered to tenants) is
    searched by an exact scan while measured: fine for the small gold sets, and never worse than the index."""
    from stratus.db import chunks

    if model in chunks.DENSE_INDEXES:
        yield "HNSW index"
        return
    chunks.DENSE_INDEXES[model] = dimensions
    try:
        yield "exact scan"
    finally:
        del chunks.DENSE_INDEXES[model]


def run(models: Sequence[str], adapters: Sequence[str]) -> dict[str, Any]:
    from stratus_tools.evals.retrieval import corpus_files, load_queries

    texts = speed_texts()
    queries = [q.query for corpus, path in SETS.values() for q in load_queries(path, corpus_files(corpus))]
    result: dict[str, Any] = {
        "sets": {k: str(v[0].relative_to(ROOT)) for k, v in SETS.items()},
        "speed_chunks": len(texts),
        "rounds": ROUNDS,
        "models": {},
    }
    chosen = candidates(models, adapters)
    for name, (documents, queries_embedder) in chosen.items():
        row: dict[str, Any] = {"dimensions": documents.dimensions}
        with dense_search_for(name, documents.dimensions) as row["dense_search"]:
            for set_name, (corpus, queries_file) in SETS.items():
                row[set_name] = quality(documents, queries_embedder, corpus, queries_file)
        result["models"][name] = row
    for name, timing in speed(chosen, texts, queries).items():
        result["models"][name]["speed"] = timing
        print(name, json.dumps(result["models"][name]))
    result["load_average_after"] = os.getloadavg()[0]
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.embedding_models", description=__doc__)
    parser.add_argument("--model", action="append", help="a registry model (default: all of MODELS)")
    parser.add_argument("--adapter", action="append", default=[], help="MODULE:FACTORY of a candidate")
    parser.add_argument("--url", default=None, help="a migrated database (default: a private embedded one)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of bench/results/")
    args = parser.parse_args(argv or [])  # bench.run calls main() with no arguments
    with database(args.url, ROOT / ".stratus" / "bench-embedding-models" / "pg") as db_url:
        os.environ["DATABASE_URL"] = db_url
        from stratus.config import reset_settings

        reset_settings()
        result = run(args.model or MODELS, args.adapter)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    else:
        record("embedding_models", result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
