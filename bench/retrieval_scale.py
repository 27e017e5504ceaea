"""Retrieval latency at 10k and 100k chunks and HNSW recall@10 against exact search.

Base data: the real chunks (text + embedding) that the ingestion benchmark produced; scaled up as
described in bench/synthetic.py. Both tables live in one database (two tenants), so the 10k tenant's
queries also exercise the tenant filter on a shared HNSW index. Queries: 8-word spans of real chunk
sentences (not the chunks themselves), so lexical and dense both have work to do.
"""

from __future__ import annotations

import random
import re

import psycopg

from bench.common import record, summary_ms
from bench.synthetic import hnsw_recall, load_base, load_table, synthesize
from stratus.config import get_settings
from stratus.db.connection import connect
from stratus.embeddings import get_embedder
from stratus.retrieval.models import RetrieveRequest
from stratus.retrieval.service import retrieve

_WORD = re.compile(r"[A-Za-z][A-Za-z_]{2,}")

def make_queries(texts: list[str], n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    queries = []
    while len(queries) < n:
        words = _WORD.findall(rng.choice(texts))
        if len(words) >= 12:
            start = rng.randrange(0, len(words) - 8)
            queries.append(" ".join(words[start:start + 8]))
    return queries

def latency(tenant_id: str, queries: list[str], mode: str, conn: psycopg.Connection) -> dict:
    totals, db_only = [], []
    for q in queries[:5]:  # warm-up: caches, plans, model
        retrieve(RetrieveRequest(tenant_id=tenant_id, query=q, k=10, mode=mode), conn=conn)
    for q in queries:
        r = retrieve(RetrieveRequest(tenant_id=tenant_id, query=q, k=10, mode=mode), conn=conn)
        totals.append(r.timings_ms["total"] / 1000)
        db_only.append((r.timings_ms["total"] - r.timings_ms.get("embed", 0.0)) / 1000)
    return {"with_query_embedding": summary_ms(totals), "excluding_query_embedding": summary_ms(db_only)}

def main(admin_url: str, base_tenant: str, sizes: tuple[int, ...] = (10_000, 100_000), n_queries: int = 100) -> dict:
    conn = connect(admin_url)
    texts, vectors = load_base(conn, base_tenant)
    print(f"base: {len(texts)} real chunks")
    queries = make_queries(texts, n_queries)
    embedder = get_embedder("all-MiniLM-L6-v2-int8")
    qvecs = embedder.embed(queries)
    results: dict = {"base_real_chunks": len(texts), "queries": len(queries),
                     "hnsw_ef_search_default": get_settings().hnsw_ef_search, "sizes": {}}
    for size in sizes:
        tenant = f"bench-{size // 1000}k"
        syn_texts, syn_vecs, sections = synthesize(texts, vectors, size)
        load_table(admin_url, tenant, syn_texts, syn_vecs, sections)
        entry: dict = {"latency": {}, "hnsw_recall_at_10": {}}
        for mode in ("lexical", "dense", "hybrid"):
            entry["latency"][mode] = latency(tenant, queries, mode, conn)
            print(f"{size:>7} {mode:<8} p50 {entry['latency'][mode]['with_query_embedding']['p50_ms']} ms"
                  f" (db only {entry['latency'][mode]['excluding_query_embedding']['p50_ms']} ms)")
        for ef in (100, 200, 400):  # the recall/latency knob; the default is settings.hnsw_ef_search
            entry["hnsw_recall_at_10"][f"ef_search={ef}"] = {
                "tenant_filter_only": round(hnsw_recall(conn, tenant, qvecs[:50], ef_search=ef), 4),
                "tenant_and_metadata_filter": round(
                    hnsw_recall(conn, tenant, qvecs[:50], ef_search=ef, section="s3"), 4),
            }
        print(f"{size:>7} HNSW recall@10 {entry['hnsw_recall_at_10']}")
        results["sizes"][str(size)] = entry
    conn.close()
    results["targets"] = {"hybrid_p50_ms_at_100k": 20, "hnsw_recall_at_10": 0.95}
    results["note"] = ("Scaled data: each synthetic chunk mixes two real chunks (2/3 + 1/3 of their sentences; "
                       "the same mix of their real MiniLM embeddings plus N(0, 0.01) noise, re-normalised). "
                       "The 10k tenant shares the table and HNSW index with the 100k tenant (tenant filter "
                       "active).")
    record("retrieval_scale", results)
    return results

if __name__ == "__main__":
    raise SystemExit("run through bench/run.py")
