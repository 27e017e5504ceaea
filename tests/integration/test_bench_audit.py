"""The audit write benchmark (bench/audit_write.py) in a small configuration on the test database: both
measures run, every audited call left its row, and the chain it built verifies."""

from __future__ import annotations

import psycopg
import pytest

from bench import audit_write
from stratus import audit


def test_the_benchmark_measures_both_variants(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: dict[str, object] = {}
    monkeypatch.setattr(audit_write, "record", lambda name, data: recorded.update({name: data}))
    monkeypatch.setenv("BENCH_AUDIT_ROUNDS", "2")
    monkeypatch.setenv("BENCH_AUDIT_CALLS", "4")
    result = audit_write.main(pg_url)
    assert recorded["audit_write"] is result
    for measure in ("change", "http"):
        assert result[measure]["plain"]["n"] == result[measure]["audited"]["n"] == 8
        assert len(result[measure]["added_ms_per_round"]) == 2
    assert audit.record is not None and audit.record.__name__ == "record"  # the no-op was put back
    with psycopg.connect(pg_url) as owner:
        chain = owner.execute("SELECT chain FROM audit_log WHERE actor_key_id = 'bench' ORDER BY id DESC LIMIT 1"
                              ).fetchone()[0]
        rows = list(audit.stored_rows(owner, chain))
    assert len(rows) == result["chain_rows_at_end"] == 16 and audit.verify(rows, chain).ok
