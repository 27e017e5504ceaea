"""Online evaluation: how fast the sampler scores samples with the offline judge, and what a day of it
costs at 1,000,000 requests/day with a hosted judge (from the price table).

    python -m bench.eval_sampler      (starts its own embedded PostgreSQL; or set DATABASE_URL)

Samples are real: the sample corpus is ingested, questions are retrieved and answered by the offline
provider in-process, and kept as the gateway keeps them (PII-redacted). Each round scores all of them in
a fresh window (checks, groundedness, the offline judge, aggregates, drift). The judge's prompt size is
measured on the same samples (the rendered `judge-rubric` prompt); its reply is taken as 60 tokens.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import ROOT, database, record

ROUNDS = int(os.environ.get("BENCH_EVAL_ROUNDS", "5"))
REQUESTS_PER_DAY = 1_000_000
JUDGE_OUTPUT_TOKENS = 60
LAMBDA_ARM_USD_PER_GB_S = 0.0000133334  # us-east-1, arm64
SAMPLER_MEMORY_GB = 1769 / 1024
QUESTIONS = [
    "How much does the Team plan cost per month?", "How do I verify that a webhook request comes from Parcelo?",
    "What should I do when the API answers 429 Too Many Requests?", "How long are tracking events kept?",
    "Which carriers does Parcelo support?", "How do I create an API key?", "What does the Starter plan include?",
    "How are webhook deliveries retried?", "How do I export delivery photos?", "Who can access customer data?",
    "What is the rate limit per workspace?", "How do I rotate a webhook secret?",
]


def seed_samples(url: str, tenant: str, copies: int) -> int:
    """Answer QUESTIONS (`copies` times, each a distinct request) and keep them as sampled requests."""
    from stratus.config import load_settings
    from stratus.db.connection import connect
    from stratus.db.records import SourceObject
    from stratus.evals.samples import record_sample
    from stratus.generation.service import generate
    from stratus.ingest.pipeline import ingest_document
    from stratus.retrieval.models import parse_request
    from stratus.retrieval.service import retrieve
    from stratus.workflow_state import GenerateTask, new_query

    s = load_settings(database_url=url, cache_enabled=False)
    for path in sorted((ROOT / "examples" / "corpus").iterdir()):
        data = path.read_bytes()
        ingest_document(tenant, path.name, data, SourceObject(tenant, path.name, etag=uuid.uuid4().hex, size=len(data)))
    conn = connect(url)
    n = 0
    try:
        for _ in range(copies):
            for question in QUESTIONS:
                query = new_query(question, tenant)
                hits = retrieve(parse_request({"tenant_id": tenant, "query": question}), conn=conn, settings=s)
                task = GenerateTask.model_validate({**query.model_dump(), "retrieval": hits})
                response = generate(task, settings=s, conn=conn)
                record_sample(conn, tenant_id=tenant, request_id=query.request_id, mode="rag", question=question,
                              response=response, latency_ms=float(response.timings_ms.get("total", 0.0)))
                n += 1
    finally:
        conn.close()
    return n


def judge_prompt_tokens(url: str, tenant: str) -> float:
    """Mean input tokens of the judge's rendered prompt over the seeded samples."""
    from stratus.db import evals as store
    from stratus.db.connection import connect, tenant_transaction
    from stratus.embeddings import get_embedder
    from stratus.prompts import ensure_prompts_synced, resolve_prompt

    ensure_prompts_synced(url)
    embedder = get_embedder("all-MiniLM-L6-v2-int8")
    conn = connect(url)
    try:
        with tenant_transaction(tenant, conn):
            samples, _ = store.samples_between(conn, tenant, datetime.now(UTC) - timedelta(days=1), datetime.now(UTC),
                                               500)
        prompt = resolve_prompt(conn, tenant, "judge-rubric")
        sizes = []
        for sample in samples:
            with tenant_transaction(tenant, conn):
                texts = store.chunk_texts(conn, tenant, list(sample["chunk_ids"]))
            passages = [{"number": i, "text": texts[c]} for i, c in enumerate(sample["chunk_ids"], 1) if c in texts]
            messages = prompt.render({"question": sample["question"], "answer": sample["answer"],
                                      "passages": passages}, [])
            sizes.append(sum(embedder.count_tokens(m.text()) for m in messages))
    finally:
        conn.close()
    return statistics.fmean(sizes)


def run(url: str, *, copies: int | None = None, rounds_n: int = ROUNDS) -> dict[str, Any]:
    from stratus.config import load_settings
    from stratus.db.connection import connect, tenant_transaction
    from stratus.db.documents import ensure_tenant
    from stratus.evals.sampler import run_sampler
    from stratus.llm.catalog import load_catalog

    tenant = f"bench-eval-{uuid.uuid4().hex[:8]}"
    with connect(url) as conn, tenant_transaction(tenant, conn):
        ensure_tenant(conn, tenant)
    started = datetime.now(UTC) - timedelta(seconds=1)
    n = seed_samples(url, tenant, copies=copies or int(os.environ.get("BENCH_EVAL_COPIES", "10")))
    s = load_settings(database_url=url)
    rounds = []
    conn = connect(url)
    try:
        for _ in range(rounds_n):
            t = time.perf_counter()
            result = run_sampler(settings=s, conn=conn, tenants=[tenant], since=started, now=datetime.now(UTC))
            seconds = time.perf_counter() - t
            assert result.samples == n, (result.samples, n)
            rounds.append({"samples": result.samples, "seconds": round(seconds, 3), "judge_failures":
                           result.judge_failures, "samples_per_s": round(result.samples / seconds, 2)})
    finally:
        conn.close()
    per_s = statistics.median(r["samples_per_s"] for r in rounds)
    prompt_tokens = judge_prompt_tokens(url, tenant)
    sampled_per_day = REQUESTS_PER_DAY * s.eval_sample_rate
    catalog = load_catalog(s)
    judges = {}
    for name, d in catalog.deployments.items():
        if d.provider == "offline":
            continue
        per_call = (prompt_tokens * d.price.input + JUDGE_OUTPUT_TOKENS * d.price.output) / 1_000_000
        judges[name] = {"usd_per_judged_request": round(per_call, 6),
                        "usd_per_day": round(per_call * sampled_per_day, 2)}
    compute_s = sampled_per_day / per_s  # the checks and scoring, as measured with the offline judge
    return {
        "samples": n, "rounds": rounds, "samples_per_s_median": per_s,
        "cost_at_1m_requests_per_day": {
            "sample_rate": s.eval_sample_rate, "sampled_per_day": sampled_per_day,
            "judge_prompt_tokens_mean": round(prompt_tokens, 1), "judge_output_tokens_assumed": JUDGE_OUTPUT_TOKENS,
            "judge_by_deployment": judges,
            "sampler_lambda_seconds_per_day": round(compute_s, 1),
            "sampler_lambda_usd_per_day": round(compute_s * SAMPLER_MEMORY_GB * LAMBDA_ARM_USD_PER_GB_S, 4),
            "note": "hosted judge calls run at the provider's speed, not measured here; the Lambda figure is the "
                    "scoring work measured with the offline judge",
        },
    }


def main(url: str | None = None) -> dict[str, Any]:
    with database(url, ROOT / ".stratus" / "bench-eval" / "pg") as db_url:
        os.environ["DATABASE_URL"] = db_url  # ingestion and the registry use the process's settings
        from stratus.config import reset_settings

        reset_settings()
        result = run(db_url)
    record("eval_sampler", result)
    print(f"eval sampler: {result['samples_per_s_median']} samples/s (offline judge); at 1M requests/day: "
          f"{result['cost_at_1m_requests_per_day']['judge_by_deployment']}")
    return result


if __name__ == "__main__":
    main()
