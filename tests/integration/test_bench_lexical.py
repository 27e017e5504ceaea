"""The lexical-scale benchmark (bench/lexical_scale.py) in a small configuration, on its own embedded
PostgreSQL (its bulk load drops the shared HNSW index, so never on the test session's database): every design
is measured and the impact postings agree with exact BM25 at this size."""

from __future__ import annotations

import pytest

from bench import lexical_scale
from stratus.config import reset_settings


def test_the_benchmark_compares_the_designs_on_a_small_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: dict[str, object] = {}
    monkeypatch.setattr(lexical_scale, "record", lambda name, data: recorded.update({name: data}))
    for name, value in {"LEXICAL_SIZE": "400", "LEXICAL_QUERIES": "6", "LEXICAL_PAGES": "3",
                        "LEXICAL_INGEST_PAGES": "1", "LEXICAL_INGEST_ROUNDS": "1", "LEXICAL_SPARSEVEC": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATABASE_URL", raising=False)  # a private server, not the session's
    try:
        result = lexical_scale.main()
    finally:
        monkeypatch.undo()  # the session's DATABASE_URL back (main drops it), then settings read it again
        reset_settings()
    assert recorded["lexical_scale"] is result
    designs = result["designs"]
    assert {"gin", "impact"} <= set(designs)
    assert designs["gin"]["recall_at_10_vs_exact"] == 1.0
    assert designs["impact"]["recall_at_10_vs_exact"] >= 0.9
    assert designs["impact"]["latency"]["n"] == 6
    assert result["impact_postings"]["count"] > 0
