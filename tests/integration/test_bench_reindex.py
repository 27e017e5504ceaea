"""The re-embedding benchmark (bench/reindex.py) in a small configuration, on its own embedded PostgreSQL:
every chunk is re-embedded each round and the figures it records are consistent."""

from __future__ import annotations

import pytest

from bench import reindex
from stratus.config import reset_settings


def test_the_benchmark_reembeds_every_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: dict[str, object] = {}
    monkeypatch.setattr(reindex, "record", lambda name, data: recorded.update({name: data}))
    monkeypatch.delenv("DATABASE_URL", raising=False)  # a private server, not the session's
    try:
        result = reindex.main(pages=1, rounds=2, batch=16)
    finally:
        monkeypatch.undo()
        reset_settings()
    assert recorded["reindex"] is result
    assert result["chunks"] > 0 and len(result["seconds_per_round"]) == 2
    assert result["chunks_per_s"] == pytest.approx(result["chunks"] / result["median_s"], rel=0.05)
    assert result["tokens_per_chunk_mean"] > 0
