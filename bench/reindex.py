"""Blue/green re-embedding throughput offline: a tenant's real chunks (REINDEX_PAGES pydoc pages, chunked
and ingested as production does) re-embedded into a second offline model by stratus.reindex.job, batch by
batch to the switch, REINDEX_ROUNDS times (median reported). Each round ends by moving the tenant back to
the deployment's model and dropping the second model's vectors, so every round embeds every chunk.

The second model is MiniLM with a fixed rotation (tests/support/second_model.py): the cost of a real second
offline model of MiniLM's size, since the rotation is one 384x384 product per batch. Also recorded: tokens
per chunk (MiniLM's tokenizer), from which docs/retrieval.md prices hosted models per million chunks.

    python -m bench.run reindex   (REINDEX_PAGES=12, REINDEX_ROUNDS=3, REINDEX_BATCH=128)
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from typing import Any

from bench.common import ROOT, database, record
from bench.corpus import write_corpus
from bench.ingest_throughput import ingest_all
from stratus.config import get_settings, reset_settings
from stratus.db.connection import close_connection
from stratus.reindex import job
from tests.support import second_model


def main(pages: int | None = None, rounds: int | None = None, batch: int | None = None) -> dict[str, Any]:
    pages = pages or int(os.environ.get("REINDEX_PAGES", "12"))
    rounds = rounds or int(os.environ.get("REINDEX_ROUNDS", "3"))
    batch = batch or int(os.environ.get("REINDEX_BATCH", "128"))
    work = ROOT / ".stratus" / f"bench-reindex-{os.getpid()}"
    with database(None, work / "pg") as url, second_model.registered() as target:
        os.environ["DATABASE_URL"] = url
        reset_settings()
        close_connection()  # the process's kept connection may point at another database
        try:
            settings = get_settings()
            files = write_corpus(work / "corpus", limit=pages)
            tenant = "bench-reindex"
            chunks = ingest_all(files, tenant)
            from stratus.db.connection import connect, tenant_transaction

            with connect(url) as conn, tenant_transaction(tenant, conn):
                row = conn.execute("SELECT avg(token_count), percentile_cont(0.5) WITHIN GROUP (ORDER BY"
                                   " token_count) FROM chunks").fetchone()
            tokens_mean, tokens_median = float(row[0]), float(row[1])
            seconds: list[float] = []
            cpu: list[float] = []  # this process's CPU time (every onnxruntime thread): robust to contention
            for _ in range(rounds):
                started, started_cpu = time.perf_counter(), time.process_time()
                job.start(None, tenant, target, settings)
                done = job.run(None, tenant, settings, batch=batch)
                seconds.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
                assert done.status == "switched" and done.embedded == chunks, done
                job.start(None, tenant, settings.embedding_model, settings)  # back: nothing to embed
                job.run(None, tenant, settings)
                job.drop_previous(None, tenant, settings, min_age_s=0)
        finally:
            close_connection()
            os.environ.pop("DATABASE_URL", None)
            reset_settings()
    shutil.rmtree(work, ignore_errors=True)
    median = statistics.median(seconds)
    result = {
        "pages": pages, "chunks": chunks, "rounds": rounds, "batch": batch,
        "seconds_per_round": [round(s, 2) for s in seconds], "median_s": round(median, 2),
        "chunks_per_s": round(chunks / median, 1),
        "cpu_s_per_round": [round(c, 2) for c in cpu],
        "chunks_per_cpu_s": round(chunks / statistics.median(cpu), 1),
        "tokens_per_chunk_mean": round(tokens_mean, 1), "tokens_per_chunk_median": round(tokens_median, 1),
        "conditions": os.environ.get("BENCH_CONDITIONS", "2 shared cores, other work running (contended)"),
    }
    record("reindex", result)
    return result
