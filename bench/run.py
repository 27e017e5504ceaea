"""`make bench`: every benchmark in one run, on this machine, results in bench/results/.

    python -m bench.run [cold_start ingest retrieval cache workflow gateway guard eval db lexical audit reindex
                         embedding_models injection_peers rollout stream otel tracing multilingual_embedder
                         multilingual_detector]
    (default: all but embedding_models, which compares every offline model, otel, whose recorded run
    compares against a baseline checkout, and multilingual_embedder, candidates not adopted: run by name;
    multilingual_detector runs by default, about a minute with five first-use runs in fresh interpreters)

BENCH_PAGES (default 24) sets the corpus size for ingestion; BENCH_SIZES (default "10000,100000") the
scaled retrieval tables, whose chunks are embedded for real on the first run (110k texts for the default
sizes: hours on 2 cores) and cached in .stratus/embedding-cache/ for every later run.
The embedded PostgreSQL used here is private to the run and deleted after.
`gateway` installs its peer (the LiteLLM proxy) into .stratus/peers/ on first use; offline it records why
that part was skipped.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys

from bench.common import RESULTS, ROOT, machine

# The benchmarks that set up what they need themselves, in the order they run (after cold_start, ingest and
# retrieval): name on the command line -> bench module, imported only when wanted (each pulls in its own stack).
_SELF_CONTAINED = {"cache": "cache_hit", "workflow": "workflow_overhead", "gateway": "gateway_overhead",
                   "guard": "guard_latency", "eval": "eval_sampler", "db": "db_connections",
                   "lexical": "lexical_scale", "audit": "audit_write",
                   "reindex": "reindex", "embedding_models": "embedding_models",
                   "injection_peers": "injection_peers", "rollout": "prompt_rollout",
                   "stream": "stream_first_chunk", "otel": "otel_export", "tracing": "tracing_overhead",
                   "multilingual_embedder": "multilingual_embedder",
                   "multilingual_detector": "multilingual_detector"}


def _summary() -> None:
    lines = ["# Benchmark results", "", f"Machine: `{json.dumps(machine())}`", ""]
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        data.pop("machine", None)
        lines += [f"## {path.stem}", "", "```json", json.dumps(data, indent=2), "```", ""]
    (RESULTS / "SUMMARY.md").write_text("\n".join(lines))


def main(argv: list[str]) -> int:
    wanted = set(argv) or {"cold_start", "ingest", "retrieval", "cache", "workflow", "gateway", "guard", "eval", "db",
                           "lexical", "audit", "reindex", "injection_peers", "rollout", "stream", "tracing",
                           "multilingual_detector"}
    if "cold_start" in wanted:
        from bench import cold_start

        cold_start.main()
    if wanted & {"ingest", "retrieval"}:
        from stratus.config import reset_settings
        from stratus.db.migrate import migrate
        from stratus_tools.local.postgres import start_embedded

        work = ROOT / ".stratus" / "bench"
        shutil.rmtree(work, ignore_errors=True)
        server = start_embedded(work / "pg", delete_on_stop=True)
        try:
            migrate(server.url)
            os.environ["DATABASE_URL"] = server.url
            reset_settings()
            from bench import ingest_throughput, retrieval_scale
            from bench.corpus import write_corpus

            pages = write_corpus(work / "corpus", limit=int(os.environ.get("BENCH_PAGES", "24")))
            if "ingest" in wanted:
                ingest_throughput.main(pages, rounds=3)
            else:  # the retrieval benchmark still needs real chunks to scale up from
                ingest_throughput.ingest_all(pages, "bench-base")
            if "retrieval" in wanted:
                sizes = tuple(int(s) for s in os.environ.get("BENCH_SIZES", "10000,100000").split(","))
                from stratus.db.connection import connect

                with connect(server.url, app_role=False) as conn:
                    base = conn.execute(
                        "SELECT tenant_id FROM chunks GROUP BY tenant_id ORDER BY count(*) DESC LIMIT 1"
                    ).fetchone()[0]
                retrieval_scale.main(server.url, base, sizes=sizes)
        finally:
            from stratus.db.connection import close_connection

            close_connection()
            server.stop()
            os.environ.pop("DATABASE_URL", None)  # the later benchmarks start their own database
            reset_settings()
    for name, module in _SELF_CONTAINED.items():
        if name in wanted:
            importlib.import_module(f"bench.{module}").main()
    _summary()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
