"""What the audit trail adds to an admin call.

    python -m bench.run audit            (or: python -m bench.audit_write)

Two measures, each alternating the variants call by call so load on the machine hits both alike:
- `change`: a limits change in its tenant transaction, without vs with its audit row (advisory lock, the
  chain's last row, the insert): the database cost of the row.
- `http`: PUT /v1/admin/tenants/{id}/limits through the app in-process, with the audit row vs with
  `stratus.audit.record` replaced by a no-op: what a client sees.
Figures: per round the median of each variant, then the median over rounds of (audited - plain).
BENCH_AUDIT_ROUNDS (default 5) and BENCH_AUDIT_CALLS (default 60 per variant and round) set the scale.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import ROOT, database, record, summary_ms


def _rounds(plain: Callable[[int], None], audited: Callable[[int], None], rounds: int, calls: int) -> dict[str, Any]:
    added, all_plain, all_audited = [], [], []
    for _ in range(rounds):
        p, a = [], []
        for i in range(calls):
            for fn, out in ((plain, p), (audited, a)) if i % 2 else ((audited, a), (plain, p)):
                t0 = time.perf_counter()
                fn(i)
                out.append(time.perf_counter() - t0)
        added.append((statistics.median(a) - statistics.median(p)) * 1000)
        all_plain += p
        all_audited += a
    return {"plain": summary_ms(all_plain), "audited": summary_ms(all_audited),
            "added_ms_per_round": [round(x, 3) for x in added], "added_ms_median": round(statistics.median(added), 3)}


def run(url: str, rounds: int, calls: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from stratus import audit
    from stratus.db.connection import connect
    from stratus.gateway import tenancy
    from stratus.gateway.app import create_app
    from stratus.gateway.keys import create_key

    tenant = f"bench-audit-{uuid.uuid4().hex[:8]}"
    conn = connect(url)
    try:
        tenancy.create_tenant(conn, tenant)
        key, _ = create_key(conn, tenant, scopes=("admin",))
        actor = audit.Actor(key_id="bench", tenant_id=tenant, scopes=("admin",), request_id="bench")

        def plain(i: int) -> None:  # the same transaction, joined the same way, without the row
            with audit.change(conn, tenant, actor, "limits.set", tenant) as change:
                change.after = tenancy.set_limits(conn, tenant, requests_per_minute=100 + i)
                change.record = False

        def audited(i: int) -> None:
            with audit.change(conn, tenant, actor, "limits.set", tenant) as change:
                change.after = tenancy.set_limits(conn, tenant, requests_per_minute=100 + i)

        change = _rounds(plain, audited, rounds, calls)
    finally:
        conn.close()

    real_record = audit.record
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app()) as client:
        def put(i: int) -> None:
            r = client.put(f"/v1/admin/tenants/{tenant}/limits", json={"requests_per_minute": 200 + i}, headers=headers)
            assert r.status_code == 200, r.text

        def http_plain(i: int) -> None:
            audit.record = lambda *args, **kwargs: {}  # type: ignore[assignment]
            try:
                put(i)
            finally:
                audit.record = real_record

        http = _rounds(http_plain, put, rounds, calls)
    return {"change": change, "http": http, "rounds": rounds, "calls_per_variant_and_round": calls,
            "chain_rows_at_end": 2 * rounds * calls}


def main(url: str | None = None) -> dict[str, Any]:
    rounds = int(os.environ.get("BENCH_AUDIT_ROUNDS", "5"))
    calls = int(os.environ.get("BENCH_AUDIT_CALLS", "60"))
    with database(url, ROOT / ".stratus" / "bench-audit" / "pg") as db_url:
        os.environ.setdefault("DATABASE_URL", db_url)
        result = run(db_url, rounds, calls)
    record("audit_write", result)
    return result


if __name__ == "__main__":
    main()
