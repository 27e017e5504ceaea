"""Lexical (BM25) search at 100k chunks: three designs side by side on the same table and queries.

- `gin`: GIN over the chunks' tsvectors with a bounded candidate set (the rarest query terms up to
  bm25_max_postings postings), every candidate scored from its tsvector: the design before migration 0011.
- `impact`: the impact postings of migration 0011 read per term in impact order with the threshold
  algorithm (exact; the runtime's default).
- `impact_fixed_depth`: the same postings, the top N of each term's list only, no certification (what an
  approximate impact design would do), recall against exact BM25.
- `sparsevec`: BM25 as pgvector `sparsevec` (document side: the same impacts; query side: idf weights)
  under an HNSW inner-product index; approximate, recall against exact BM25.

Exact BM25 (the reference for recall) is the GIN path with no candidate bound. Data: the chunker's real
chunks of LEXICAL_PAGES pydoc pages (bench/corpus.py), scaled up as bench/synthetic.py describes (the
vectors it needs are random here: lexical search never reads them). Ingestion cost of the postings:
LEXICAL_INGEST_PAGES pages ingested for real (embedding included) with and without the postings write,
alternating rounds, plus the share of ingest time spent inside that write.

    python -m bench.run lexical   (LEXICAL_SIZE=100000, LEXICAL_QUERIES=100, LEXICAL_PAGES=100,
                                   LEXICAL_INGEST_PAGES=4, LEXICAL_INGEST_ROUNDS=4, LEXICAL_SPARSEVEC=1)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from bench.common import ROOT, database, record, summary_ms
from bench.corpus import write_corpus
from bench.ingest_throughput import chunk_texts, ingest_all
from bench.retrieval_scale import make_queries
from bench.synthetic import load_table, synthesize
from stratus.config import get_settings, reset_settings
from stratus.db import chunks as chunk_store
from stratus.db import documents
from stratus.db.chunks import ChunkScope
from stratus.db.connection import connect, tenant_transaction
from stratus.retrieval import lexical

Hits = list[tuple[int, float]]


@contextmanager
def _without_postings() -> Iterator[None]:
    """Ingestion as before migration 0011: the postings write (and delete) skipped."""
    add, remove = documents._add_postings, documents._remove_postings  # noqa: SLF001 - the A/B switch
    documents._add_postings = lambda *a, **k: None  # type: ignore[assignment]  # noqa: SLF001
    documents._remove_postings = lambda *a, **k: None  # type: ignore[assignment]  # noqa: SLF001
    try:
        yield
    finally:
        documents._add_postings, documents._remove_postings = add, remove  # noqa: SLF001


_POSTINGS_S = [0.0]  # time spent inside the postings writes (with_postings rounds)


def _timing(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _POSTINGS_S[0] += time.perf_counter() - t
    return wrapped


def _ingest(files: list[Path], tenant_id: str) -> tuple[int, float]:
    start = time.perf_counter()
    return ingest_all(files, tenant_id), time.perf_counter() - start


def ingest_cost(files: list[Path], rounds: int) -> dict[str, Any]:
    """Chunks/s with and without the postings write, alternating rounds on the same documents."""
    _ingest(files[:2], "bench-lex-warm")  # model load and first plans outside the timings
    rates: dict[str, list[float]] = {"without_postings": [], "with_postings": []}
    shares: list[float] = []
    add, remove = documents._add_postings, documents._remove_postings  # noqa: SLF001
    documents._add_postings, documents._remove_postings = _timing(add), _timing(remove)  # type: ignore[assignment]  # noqa: SLF001
    for r in range(rounds):
        for mode in ("without_postings", "with_postings") if r % 2 == 0 else ("with_postings", "without_postings"):
            if mode == "without_postings":
                with _without_postings():
                    n, s = _ingest(files, f"bench-lex-{mode}-{r}")
            else:
                _POSTINGS_S[0] = 0.0
                n, s = _ingest(files, f"bench-lex-{mode}-{r}")
                shares.append(_POSTINGS_S[0] / s)
            rates[mode].append(n / s)
            print(f"ingest round {r + 1} {mode}: {n / s:.1f} chunks/s ({n} chunks)")
    documents._add_postings, documents._remove_postings = add, remove  # noqa: SLF001
    before, after = statistics.median(rates["without_postings"]), statistics.median(rates["with_postings"])
    return {"rounds": rounds, "documents": len(files), "chunks_per_s_without_postings": round(before, 2),
            "chunks_per_s_with_postings": round(after, 2), "slowdown": round(1 - after / before, 4),
            # Less noisy on a shared machine: the share of ingest wall time spent writing postings.
            "postings_write_share_of_ingest_time": round(statistics.median(shares), 4),
            "all_rounds": {k: [round(x, 2) for x in v] for k, v in rates.items()}, "target_slowdown_max": 0.10}


def _timed(fn: Callable[[str], Hits], queries: list[str]) -> tuple[dict[str, float], list[Hits]]:
    for q in queries[:5]:
        fn(q)
    times, out = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        times.append(time.perf_counter() - t)
    return summary_ms(times), out


def _recall(got: list[Hits], exact: list[Hits], k: int) -> float:
    hits = total = 0
    for g, e in zip(got, exact, strict=True):
        want = {c for c, _ in e[:k]}
        hits += len({c for c, _ in g[:k]} & want)
        total += len(want)
    return round(hits / total, 4) if total else 1.0


def _size(conn: psycopg.Connection, relation: str) -> int:
    return int(conn.execute("SELECT pg_total_relation_size(%s)", [relation]).fetchone()[0])


def _build_sparse(admin_url: str, tenant: str) -> dict[str, Any]:
    """A sparsevec per chunk (dimension = the term's rank in the tenant's vocabulary, value = its impact)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("DROP TABLE IF EXISTS bench_terms, bench_sparse")
        conn.execute("CREATE TABLE bench_terms AS SELECT term, (row_number() OVER (ORDER BY term))::int AS dim"
                     " FROM lexical_terms WHERE tenant_id = %s", [tenant])
        conn.execute("CREATE UNIQUE INDEX ON bench_terms (term)")
        dims = int(conn.execute("SELECT count(*) FROM bench_terms").fetchone()[0]) + 1
        t = time.perf_counter()
        conn.execute(
            "CREATE TABLE bench_sparse AS SELECT p.chunk_id, ('{' || string_agg(t.dim || ':' || p.impact, ','"
            f" ORDER BY t.dim) || '}}/{dims}')::sparsevec({dims}) AS v FROM lexical_postings p"
            " JOIN bench_terms t ON t.term = p.term WHERE p.tenant_id = %s GROUP BY p.chunk_id", [tenant])
        conn.execute("ALTER TABLE bench_sparse ADD PRIMARY KEY (chunk_id)")
        table_s = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute("CREATE INDEX bench_sparse_hnsw ON bench_sparse USING hnsw (v sparsevec_ip_ops)"
                     " WITH (m = 16, ef_construction = 64)")
        index_s = time.perf_counter() - t
        conn.execute("ANALYZE bench_sparse")
        return {"dims": dims, "table_build_s": round(table_s, 1), "hnsw_build_s": round(index_s, 1),
                "bytes": _size(conn, "bench_sparse")}


def _sparse_search(conn: psycopg.Connection, tenant: str, query: str, dims: int, ef: int, k: int) -> Hits:
    terms = chunk_store.query_lexemes(conn, query)
    stats = chunk_store.lexical_stats(conn, tenant, terms)
    weights = {t: lexical.idf(stats.chunk_count, d) for t, d in stats.df.items()}
    rows = conn.execute("SELECT term, dim FROM bench_terms WHERE term = ANY(%s)", [list(weights)]).fetchall()
    if not rows:
        return []
    qv = "{" + ",".join(f"{d}:{weights[t]}" for t, d in sorted(rows, key=lambda r: r[1])) + f"}}/{dims}"
    conn.execute(f"SET hnsw.ef_search = {int(ef)}")
    return [(int(r[0]), -float(r[1])) for r in conn.execute(
        f"SELECT chunk_id, v <#> %s::sparsevec({dims}) FROM bench_sparse"
        f" ORDER BY v <#> %s::sparsevec({dims}) LIMIT %s", [qv, qv, k]).fetchall()]


def main(url: str | None = None) -> dict[str, Any]:
    size = int(os.environ.get("LEXICAL_SIZE", "100000"))
    n_queries = int(os.environ.get("LEXICAL_QUERIES", "100"))
    pages = int(os.environ.get("LEXICAL_PAGES", "100"))
    ingest_pages = int(os.environ.get("LEXICAL_INGEST_PAGES", "4"))
    k = 10
    work = ROOT / ".stratus" / "bench-lexical"
    with database(url, work / "pg") as db_url:
        os.environ["DATABASE_URL"] = db_url
        reset_settings()
        settings = get_settings()
        files = write_corpus(work / "corpus", limit=pages)
        out: dict[str, Any] = {"size": size, "queries": n_queries, "k": k, "bm25_k1": settings.bm25_k1,
                               "bm25_b": settings.bm25_b, "bm25_max_postings": settings.bm25_max_postings,
                               # timings on a shared machine swing with its load: note it at start and end
                               "load_average_1_5_15": {"start": [round(x, 2) for x in os.getloadavg()]}}
        out["ingest"] = ingest_cost(files[:ingest_pages], rounds=int(os.environ.get("LEXICAL_INGEST_ROUNDS", "4")))
        conn = connect(db_url)
        # Real chunk texts (the chunker's output over the pages); the vectors play no part in lexical search.
        texts = chunk_texts(files)
        out["base_real_chunks"] = len(texts)
        queries = make_queries(texts, n_queries, parity=0)
        tenant = f"bench-lex-{size // 1000}k"
        syn_texts, sections = synthesize(texts, 0, size)
        syn_vecs = np.random.default_rng(1).normal(size=(size, 384)).astype(np.float32)
        t = time.perf_counter()
        load_table(db_url, tenant, syn_texts, syn_vecs, sections, postings=False)  # the rebuild is timed below
        print(f"loaded {size} chunks in {time.perf_counter() - t:.0f} s")
        with psycopg.connect(db_url, autocommit=True) as admin:
            t = time.perf_counter()
            with admin.transaction():
                n_postings = documents.rebuild_postings(admin, tenant)
            build_s = time.perf_counter() - t
            admin.execute("VACUUM ANALYZE lexical_postings")
            out["storage_bytes"] = {
                "impact_postings_table_and_primary_key": _size(admin, "lexical_postings"),
                "gin_index_chunks_lexemes": _size(admin, "chunks_lexemes"),
                "chunks_table_total": _size(admin, "chunks"),
            }
        out["impact_postings"] = {"count": n_postings, "bulk_build_s": round(build_s, 1),
                                  "per_chunk": round(n_postings / size, 1)}
        print(f"{n_postings} postings in {build_s:.0f} s; storage {out['storage_bytes']}")

        def run(q: str, *, impacts: bool, max_postings: int, limit: int = k) -> lexical.LexicalResult:
            with tenant_transaction(tenant, conn):
                return lexical.search(conn, tenant, q, ChunkScope(), limit=limit, k1=settings.bm25_k1,
                                      b=settings.bm25_b, max_postings=max_postings, impacts=impacts)

        exact_res = [run(q, impacts=False, max_postings=10**9) for q in queries]
        exact = [r.hits for r in exact_res]
        designs: dict[str, Any] = {}
        flags: list[bool] = []

        def gin(q: str) -> Hits:
            r = run(q, impacts=False, max_postings=settings.bm25_max_postings)
            flags.append(r.exact)
            return r.hits

        def impact(q: str) -> Hits:
            r = run(q, impacts=True, max_postings=settings.bm25_max_postings)
            flags.append(r.exact)
            return r.hits

        for name, fn in (("gin", gin), ("impact", impact)):
            flags.clear()
            lat, got = _timed(fn, queries)
            designs[name] = {"latency": lat, "recall_at_10_vs_exact": _recall(got, exact, k),
                             "share_reported_exact": round(sum(flags[5:]) / len(queries), 3)}
            print(f"{name}: {designs[name]}")
        meta_scope = ChunkScope(metadata={"section": "s3"})

        def impact_filtered(q: str) -> Hits:
            with tenant_transaction(tenant, conn):
                return lexical.search(conn, tenant, q, meta_scope, limit=k, k1=settings.bm25_k1, b=settings.bm25_b,
                                      max_postings=settings.bm25_max_postings).hits

        lat, _ = _timed(impact_filtered, queries)
        designs["impact"]["latency_metadata_filter_one_in_ten"] = lat

        for depth in (100, 1000):
            def fixed(q: str, depth: int = depth) -> Hits:
                with tenant_transaction(tenant, conn):
                    terms = chunk_store.query_lexemes(conn, q)
                    stats = chunk_store.lexical_stats(conn, tenant, terms)
                    weights = {t: lexical.idf(stats.chunk_count, d) for t, d in stats.df.items()}
                    lists = chunk_store.read_postings(conn, tenant, {t: chunk_store.POSTINGS_START for t in weights},
                                                      depth)
                    ids = sorted({int(c) for ids_, _ in lists.values() for c in ids_})
                    return chunk_store.bm25_score(conn, tenant, weights, ids, ChunkScope(), k1=settings.bm25_k1,
                                                  b=settings.bm25_b, avg_length=stats.avg_length)[:k]
            lat, got = _timed(fixed, queries)
            designs[f"impact_fixed_depth_{depth}"] = {"latency": lat, "recall_at_10_vs_exact": _recall(got, exact, k)}
            print(f"fixed depth {depth}: {designs[f'impact_fixed_depth_{depth}']}")

        if os.environ.get("LEXICAL_SPARSEVEC", "1") == "1":
            info = _build_sparse(db_url, tenant)
            print(f"sparsevec: {info}")
            with psycopg.connect(db_url, autocommit=True) as admin:
                for ef in (40, 200):
                    lat, got = _timed(lambda q, ef=ef: _sparse_search(admin, tenant, q, info["dims"], ef, k), queries)
                    designs[f"sparsevec_hnsw_ef{ef}"] = {"latency": lat,
                                                         "recall_at_10_vs_exact": _recall(got, exact, k)}
                    print(f"sparsevec ef {ef}: {designs[f'sparsevec_hnsw_ef{ef}']}")
            designs["sparsevec_build"] = info
        out["designs"] = designs
        out["load_average_1_5_15"]["end"] = [round(x, 2) for x in os.getloadavg()]
        out["targets"] = {"lexical_p50_ms_at_100k": 15}
        out["note"] = ("Latency: one lexical search (stats, postings or GIN, scoring), no query embedding, "
                       "through tenant_transaction as the app role. Scaled data as in bench/synthetic.py.")
        conn.close()
    os.environ.pop("DATABASE_URL", None)
    reset_settings()
    record("lexical_scale", out)
    return out


if __name__ == "__main__":
    raise SystemExit("run through bench/run.py")
