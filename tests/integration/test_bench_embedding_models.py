"""The embedding-model benchmark (bench/embedding_models.py) on a three-document set: a registry model and
an adapter candidate (its own query side, no vector index of its own) scored and timed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import embedding_models as bench
from stratus.config import reset_settings
from stratus.db import chunks
from stratus.embeddings import get_embedder

DOCS = {
    "keys.md": "# API keys\n\nRotate API keys every 90 days. A revoked key stops working at once.",
    "billing.md": "# Billing\n\nInvoices are issued monthly. Budgets stop spending when they run out.",
    "search.md": "# Search\n\nHybrid search fuses BM25 and vector similarity over your documents.",
}
QUERIES = [
    {"id": "q1", "query": "how often should API keys be rotated", "relevant": ["keys.md"]},
    {"id": "q2", "query": "what happens when a budget runs out", "relevant": ["billing.md"]},
]


class _Renamed:
    """The L3 model under another name: a candidate outside the registry, with a query side of its own."""

    def __init__(self, name: str) -> None:
        inner = get_embedder("paraphrase-MiniLM-L3-v2")
        self.model_name, self.dimensions, self.max_tokens = name, inner.dimensions, inner.max_tokens
        self.embed, self.count_tokens, self.token_offsets = inner.embed, inner.count_tokens, inner.token_offsets


def candidate_pair() -> tuple[Any, Any]:
    return _Renamed("candidate-l3"), _Renamed("candidate-l3")


def test_the_benchmark_scores_and_times_each_model(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text)
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    monkeypatch.setattr(bench, "SETS", {"tiny": (corpus, queries)})
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    monkeypatch.setattr(bench, "ROUNDS", 1)
    monkeypatch.setattr(bench, "SPEED_PAGES", 1)
    monkeypatch.setattr(bench, "SPEED_CHUNKS", 4)
    monkeypatch.setenv("DATABASE_URL", pg_url)  # main sets it; undone after
    indexes_before = dict(chunks.DENSE_INDEXES)
    out = tmp_path / "embedding_models.json"
    try:
        result = bench.main(
            [
                "--url",
                pg_url,
                "--out",
                str(out),
                "--model",
                "all-MiniLM-L6-v2-int8",
                "--adapter",
                f"{__name__}:candidate_pair",
            ]
        )
    finally:
        monkeypatch.undo()
        reset_settings()
    assert json.loads(out.read_text()) == result
    assert chunks.DENSE_INDEXES == indexes_before  # the exact-scan stand-in is gone again
    minilm, candidate = result["models"]["all-MiniLM-L6-v2-int8"], result["models"]["candidate-l3"]
    assert (minilm["dense_search"], candidate["dense_search"]) == ("HNSW index", "exact scan")
    for row in (minilm, candidate):
        for mode in ("dense", "hybrid"):
            assert row["tiny"][mode]["recall@10"] == 1.0 and row["tiny"][mode]["ndcg@10"] > 0.5
        assert row["speed"]["chunks_per_s"] > 0 and row["speed"]["query_embed_p50_ms"] > 0
    assert result["speed_chunks"] == 4
