"""Query workflow overhead in the local interpreter, excluding the tasks' own time.

    python -m bench.workflow_overhead   (starts a private local stack: embedded PostgreSQL + moto)

Each question runs through the real state machine (moto's Step Functions interpreter calling the local
handlers). Overhead = the caller's wall time minus the time the Retrieve and Generate tasks report for
themselves, so the provider (offline here), the database and the embedding are not counted. RAG mode
(Choice -> Retrieve -> Generate) and chat mode (Choice -> Generate) are measured separately, with the
cache off so every request does the full work.
"""

from __future__ import annotations

import os
import shutil
import statistics
import uuid

from bench.common import ROOT, record, summary_ms

ROUNDS = int(os.environ.get("BENCH_WORKFLOW_ROUNDS", "30"))
QUESTIONS = (
    "How do I verify that a webhook request really comes from Parcelo?",
    "What should I do when the API answers 429 Too Many Requests?",
    "How much does the Team plan cost per month?",
    "How long are tracking events kept after delivery?",
)


def _measure(mode: str, tenant: str) -> dict:
    from stratus_tools.local.ask import ask

    overhead, wall, tasks = [], [], []
    for i in range(ROUNDS + 2):
        out = ask(QUESTIONS[i % len(QUESTIONS)], tenant, mode=mode)
        if i < 2:  # warm-up: handler modules, the embedding model, connections
            continue
        w = out["workflow_ms"]
        overhead.append(w["overhead"] / 1000)
        wall.append(w["wall"] / 1000)
        tasks.append(w["tasks"] / 1000)
    return {"overhead": summary_ms(overhead), "wall": summary_ms(wall), "tasks": summary_ms(tasks),
            "overhead_share_of_wall": round(statistics.median(o / w for o, w in zip(overhead, wall, strict=True)), 3)}


def main() -> dict:
    from stratus.config import load_settings
    from stratus_tools.local.commands import DEMO_CORPUS
    from stratus_tools.local.stack import EnvOverlay, LocalStack

    work = ROOT / ".stratus" / "bench-workflow"
    shutil.rmtree(work, ignore_errors=True)
    env = EnvOverlay()
    env.set({"STRATUS_CACHE_ENABLED": "false", "DATABASE_URL": None})
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        with LocalStack(load_settings(data_dir=work), start_pollers=False):
            _ingest(DEMO_CORPUS, tenant)
            result = {"rounds": ROUNDS, "provider": "offline", "cache": "off",
                      "rag": _measure("rag", tenant), "chat": _measure("chat", tenant)}
    finally:
        env.restore()
        shutil.rmtree(work, ignore_errors=True)
    record("workflow_overhead", result)
    return result


def _ingest(folder, tenant: str) -> None:
    from stratus.db.records import SourceObject
    from stratus.ingest.pipeline import ingest_document

    for path in sorted(folder.iterdir()):
        if path.is_file():
            data = path.read_bytes()
            source = SourceObject(tenant_id=tenant, key=path.name, etag=uuid.uuid4().hex, size=len(data))
            ingest_document(tenant, path.name, data, source)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
