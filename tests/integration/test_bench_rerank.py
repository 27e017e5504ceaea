"""The reranking benchmark (bench/rerank.py) on a three-document corpus: the fused baseline, the Bedrock
adapter through boto3 against the loopback Rerank server for each model, and the real API recorded as not
measured without --bedrock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import rerank as rerank_bench
from stratus.config import reset_settings

DOCS = {
    "keys.md": "# API keys\n\nRotate API keys every 90 days. A revoked key stops working at once.",
    "billing.md": "# Billing\n\nInvoices are issued monthly. Budgets stop spending when they run out.",
    "search.md": "# Search\n\nHybrid search fuses BM25 and vector similarity over your documents.",
}
QUERIES = [{"id": "q1", "query": "how often should API keys be rotated", "relevant": ["keys.md"]},
           {"id": "q2", "query": "what happens when a budget runs out", "relevant": ["billing.md"]}]


def test_the_benchmark_records_baseline_and_adapter(pg_url: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    monkeypatch.setattr(rerank_bench, "CORPUS", corpus)
    monkeypatch.setattr(rerank_bench, "QUERIES", queries)
    monkeypatch.setattr(rerank_bench, "ROUNDS", 1)
    for name in ("DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # main sets them; undone after
        monkeypatch.setenv(name, pg_url if name == "DATABASE_URL" else "loopback")
    out = tmp_path / "rerank.json"
    try:
        result = rerank_bench.main(["--url", pg_url, "--out", str(out)])
    finally:
        monkeypatch.undo()
        reset_settings()
    assert json.loads(out.read_text()) == result
    configs = result["configs"]
    assert configs["none"]["queries"] == 2 and configs["none"]["ndcg@10"] > 0
    for model in rerank_bench.MODELS:
        loop = configs[f"bedrock-loopback/{model}"]
        assert loop["rerank_skipped"] == 0 and "p50_added_ms" in loop and loop["cost_usd_per_query"] > 0
        assert configs[f"bedrock/{model}"]["measured"] is False
    assert result["adapter_overhead_loopback"]["candidates"] == 100
