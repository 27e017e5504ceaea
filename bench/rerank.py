"""Reranking: what each reranker adds to hybrid retrieval on the project's labelled set (evals/retrieval),
in nDCG@10 and in p50 latency, against the fused order on the same tenant, queries and run.

    python -m bench.rerank                  (starts its own embedded PostgreSQL; or set DATABASE_URL)
    python -m bench.rerank --bedrock        (also the real Bedrock Rerank API: AWS credentials and a region
                                             where Rerank is offered, STRATUS_RERANK_REGION)

Configurations:
- `none`: the fused order (the default fusion), the baseline.
- `bedrock-loopback/<model>`: the Bedrock adapter through boto3 against the loopback Rerank server
  (tests.support.upstreams.BedrockRerankUpstream), which scores by query-word overlap in ~0 ms. Its latency
  is the floor of what the adapter adds (request building, SigV4, HTTP, parsing) without the model's time;
  its nDCG says nothing about the real models and is recorded only to show the order was applied.
- `bedrock/<model>`: the real API, only with --bedrock; otherwise recorded as not measured, and why.

Each query asks for CHUNKS_FETCHED chunks as `stratus eval retrieval` does, collapsed to documents; the
reranker sees every fused candidate (retrieval_candidates, or k when larger).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import ROOT, database, percentile, record

CORPUS = ROOT / "evals" / "retrieval" / "corpus"
QUERIES = ROOT / "evals" / "retrieval" / "queries.jsonl"
MODELS = ("amazon.rerank-v1:0", "cohere.rerank-v3-5:0")
ROUNDS = int(os.environ.get("BENCH_RERANK_ROUNDS", "3"))


def _score(tenant_id: str, queries: list[Any], settings: Any) -> dict[str, Any]:
    from stratus.retrieval.models import RetrieveRequest
    from stratus.retrieval.rerank import reset_rerankers
    from stratus.retrieval.service import retrieve
    from stratus_tools.evals.retrieval import CHUNKS_FETCHED, DOCS_SCORED, distinct_documents, ndcg_at

    reset_rerankers()

    def ask(q: str) -> Any:
        return retrieve(RetrieveRequest(tenant_id=tenant_id, query=q, k=CHUNKS_FETCHED, mode="hybrid"),
                        settings=settings)

    ask(queries[0].query)  # warm-up: model load, clients, plan cache
    latencies: list[float] = []
    ndcg = 0.0
    skipped: list[str] = []
    cost = 0.0
    for round_ in range(ROUNDS):
        for q in queries:
            start = time.perf_counter()
            res = ask(q.query)
            latencies.append((time.perf_counter() - start) * 1000)
            if round_ == 0:
                ranked = distinct_documents(h.source_key for h in res.hits)[:DOCS_SCORED]
                ndcg += ndcg_at(ranked, set(q.relevant), 10)
                cost += res.rerank_cost_usd
                if res.rerank_error:
                    skipped.append(res.rerank_error)
    return {"ndcg@10": round(ndcg / len(queries), 4), "latency_p50_ms": round(percentile(latencies, 50), 2),
            "latency_p95_ms": round(percentile(latencies, 95), 2), "queries": len(queries), "rounds": ROUNDS,
            "cost_usd_per_query": round(cost / len(queries), 6), "rerank_skipped": len(skipped),
            "skip_reasons": sorted(set(skipped))[:3]}


def adapter_overhead(base_url: str, calls: int = 200) -> dict[str, Any]:
    """The adapter alone: one Rerank call of 100 candidates of ~100 words through boto3 to the loopback
    server, p50 over `calls` (steadier than a difference of two retrieval p50s on a busy machine)."""
    from stratus.retrieval.bedrock_rerank import BedrockReranker
    from stratus.retrieval.models import Hit

    words = "postgres vector index tenant query latency budget chunk document ranking".split()
    hits = [Hit(chunk_id=i, document_id="d", source_key=f"k{i}", document_version=1, text=" ".join(
        words[(i + j) % len(words)] for j in range(100)), title=None, heading_path=[], page=None, score=0.0)
        for i in range(100)]
    reranker = BedrockReranker(MODELS[0], region="us-east-1", endpoint_url=base_url)
    reranker.rerank("vector index latency", hits, 100, deadline=time.monotonic() + 5)  # warm: client, pool
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        reranker.rerank("vector index latency", hits, 100, deadline=time.monotonic() + 5)
        samples.append((time.perf_counter() - start) * 1000)
    return {"candidates": 100, "calls": calls, "p50_ms": round(percentile(samples, 50), 2),
            "p95_ms": round(percentile(samples, 95), 2)}


def run(real_bedrock: bool) -> dict[str, Any]:
    from stratus.config import load_settings
    from stratus_tools.evals.retrieval import _drop_tenant, corpus_files, ingest_corpus, load_queries
    from tests.support.upstreams import BedrockRerankUpstream

    files = corpus_files(CORPUS)
    queries = load_queries(QUERIES, files)
    tenant_id = f"bench-rerank-{uuid.uuid4().hex[:8]}"
    ingest_corpus(tenant_id, files)
    configs: dict[str, Any] = {}
    try:
        configs["none"] = _score(tenant_id, queries, load_settings(reranker="none"))
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "loopback")  # the loopback server checks the SigV4 shape only
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "loopback")
        with BedrockRerankUpstream() as up:
            overhead = adapter_overhead(up.base_url)
            for model in MODELS:
                configs[f"bedrock-loopback/{model}"] = _score(tenant_id, queries, load_settings(
                    reranker="bedrock", rerank_model=model, rerank_endpoint_url=up.base_url))
        for model in MODELS:
            if real_bedrock:
                configs[f"bedrock/{model}"] = _score(tenant_id, queries,
                                                     load_settings(reranker="bedrock", rerank_model=model))
            else:
                configs[f"bedrock/{model}"] = {"measured": False,
                                               "why": "needs AWS credentials and network (run with --bedrock)"}
    finally:
        _drop_tenant(tenant_id)
    base = configs["none"]
    for name, row in configs.items():
        if name != "none" and "ndcg@10" in row:
            if name.startswith("bedrock-loopback/"):  # word overlap, not a model: its nDCG is no model's gain
                row["ndcg@10_of_the_overlap_scorer"] = row.pop("ndcg@10")
            else:
                row["ndcg@10_gain"] = round(row["ndcg@10"] - base["ndcg@10"], 4)
            row["p50_added_ms"] = round(row["latency_p50_ms"] - base["latency_p50_ms"], 2)
    return {"set": "evals/retrieval", "mode": "hybrid", "configs": configs, "adapter_overhead_loopback": overhead,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),  # retrieval p50 differences need a quiet machine
            "offline_cross_encoder": "none: no registry package ships cross-encoder weights usable offline "
                                     "(docs/retrieval.md#reranking)"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.rerank", description=__doc__)
    parser.add_argument("--bedrock", action="store_true", help="also measure the real Bedrock Rerank API")
    parser.add_argument("--url", default=None, help="a migrated database (default: a private embedded one)")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of bench/results/rerank.json")
    args = parser.parse_args(argv)
    with database(args.url, ROOT / ".stratus" / "bench-rerank" / "pg") as db_url:
        os.environ["DATABASE_URL"] = db_url
        from stratus.config import reset_settings

        reset_settings()
        result = run(args.bedrock)
    if args.out is not None:
        import json

        args.out.write_text(json.dumps(result, indent=2) + "\n")
    else:
        record("rerank", result)
    print("adapter alone (loopback, 100 candidates):", result["adapter_overhead_loopback"])
    for name, row in result["configs"].items():
        print(name, {k: v for k, v in row.items() if k in ("ndcg@10", "ndcg@10_gain", "latency_p50_ms",
                                                            "p50_added_ms", "measured",
                                                            "ndcg@10_of_the_overlap_scorer")})
    return result


if __name__ == "__main__":
    main()
