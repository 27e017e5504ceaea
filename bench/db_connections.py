"""Database connections through a transaction pooler: many client processes, few server connections.

    python -m bench.run db            (or: python -m bench.db_connections)

N client processes (each as a Lambda environment would be: its own process, its own connection, logged
in as the application role) connect through PgBouncer in transaction mode (the local stand-in for RDS
Proxy), wait until all N are connected, then each runs a few tenant transactions holding the server
connection for a short pg_sleep. Meanwhile this process counts the application role's server
connections in pg_stat_activity on the real server. The figure: N clients are served by at most
`pool_size` server connections. The same clients connected directly hold N.

Each transaction also reads what its tenant can see, so the run checks isolation under multiplexing:
every transaction must see its own tenant's row and no other.

BENCH_DB_CLIENTS (default 200) and BENCH_DB_POOL (default 4) set the scale; the direct comparison runs
with as many clients as the server's max_connections allows (less 10).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import Any

from bench.common import ROOT, database, record, summary_ms

TENANTS = 8


def _client(url: str, tenant: str, transactions: int, sleep_s: float, barrier: Any, results: Any) -> None:
    """One client process: connect as the application role, wait for the others, run the transactions."""
    from stratus.db.connection import connect, tenant_transaction

    out: dict[str, Any] = {"tenant": tenant, "backends": [], "latencies_s": [], "leaks": 0, "error": None}
    try:
        conn = connect(url)  # as stratus_app (the URL's user is swapped if it is another)
        try:
            out["user"] = conn.execute("SELECT current_user || '/' || session_user").fetchone()[0]
            conn.rollback()
            barrier.wait(timeout=300)
            out["started"] = time.time()
            for _ in range(transactions):
                t0 = time.perf_counter()
                with tenant_transaction(tenant, conn):
                    pid, seen, _ = conn.execute(
                        "SELECT pg_backend_pid(), (SELECT array_agg(id ORDER BY id) FROM tenants), pg_sleep(%s)",
                        [sleep_s],
                    ).fetchone()
                out["latencies_s"].append(time.perf_counter() - t0)
                out["backends"].append(pid)
                if seen != [tenant]:
                    out["leaks"] += 1
            out["finished"] = time.time()
        finally:
            conn.close()
    except Exception as err:  # noqa: BLE001 - reported to the parent, which fails the run
        out["error"] = f"{type(err).__name__}: {err}"
        barrier.abort()
    results.put(out)


def _count_server_connections(owner_url: str, user: str, stop: threading.Event, seen: list[int],
                              exclude: list[int]) -> None:
    import psycopg

    with psycopg.connect(owner_url, autocommit=True) as conn:
        while not stop.is_set():
            (n,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND backend_type = 'client backend'"
                " AND NOT (pid = ANY(%s))", [user, exclude]).fetchone()
            seen.append(int(n))
            time.sleep(0.005)


def _create_tenants(app_url: str, prefix: str) -> list[str]:
    from stratus.db import documents
    from stratus.db.connection import connect, tenant_transaction

    tenants = [f"{prefix}-{i}" for i in range(TENANTS)]
    with connect(app_url) as conn:
        for tenant in tenants:
            with tenant_transaction(tenant, conn):
                documents.ensure_tenant(conn, tenant)
    return tenants


def measure(owner_url: str, client_url: str, *, clients: int, transactions: int, sleep_ms: float,
            tenants: list[str], user: str = "stratus_app") -> dict[str, Any]:
    """`clients` processes through `client_url`; the application role's server connections counted on the
    server behind `owner_url` (connections that existed before are not counted)."""
    import psycopg

    with psycopg.connect(owner_url, autocommit=True) as conn:
        existing = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE usename = %s", [user])]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["stratus.db.connection", "stratus.db.documents"])
    barrier, results = ctx.Barrier(clients), ctx.Queue()
    stop, counts = threading.Event(), []
    sampler = threading.Thread(target=_count_server_connections, args=(owner_url, user, stop, counts, existing),
                               daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_client, args=(client_url, tenants[i % len(tenants)], transactions,
                                               sleep_ms / 1000, barrier, results)) for i in range(clients)]
    for p in procs:
        p.start()
    outs = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    total_s = time.perf_counter() - t0
    stop.set()
    sampler.join(timeout=10)

    errors = [o["error"] for o in outs if o["error"]]
    if errors:
        raise RuntimeError(f"{len(errors)} of {clients} clients failed, e.g. {errors[0]}")
    latencies = [x for o in outs for x in o["latencies_s"]]
    return {
        "clients": clients,
        "transactions_per_client": transactions,
        "sleep_ms": sleep_ms,
        "users": sorted({o["user"] for o in outs}),
        "max_server_connections": max(counts, default=0),
        "server_connection_samples": len(counts),
        "distinct_server_backends": len({pid for o in outs for pid in o["backends"]}),
        "wall_s": round(max(o["finished"] for o in outs) - min(o["started"] for o in outs), 3),
        "with_process_starts_s": round(total_s, 3),
        "transaction_ms": summary_ms(latencies),
        "tenant_leaks": sum(o["leaks"] for o in outs),
    }


def run(server_url: str, *, clients: int = 200, pool_size: int = 4, transactions: int = 5,
        sleep_ms: float = 20.0, direct_clients: int = 0) -> dict[str, Any]:
    """The pooled figure (and, if `direct_clients`, that many clients without the pooler) against
    `server_url` (the owner's URL of a migrated database)."""
    from stratus.db.connection import app_url
    from stratus_tools.local.pgbouncer import pgbouncer, version

    tenants = _create_tenants(app_url(server_url), f"bench-db-{os.getpid()}-{int(time.time())}")
    result: dict[str, Any] = {"clients": clients, "pool_size": pool_size,
                              "pooler": f"{version()}, pool_mode=transaction"}
    with pgbouncer(server_url, pool_size=pool_size, max_client_conn=max(100, 2 * clients)) as bouncer:
        result["pooled"] = measure(server_url, bouncer.url, clients=clients, transactions=transactions,
                                   sleep_ms=sleep_ms, tenants=tenants)
    if direct_clients:
        result["direct"] = measure(server_url, app_url(server_url), clients=direct_clients,
                                   transactions=transactions, sleep_ms=sleep_ms, tenants=tenants)
    return result


def main() -> None:
    clients = int(os.environ.get("BENCH_DB_CLIENTS", "200"))
    pool_size = int(os.environ.get("BENCH_DB_POOL", "4"))
    with database(None, ROOT / ".stratus" / "bench-db" / "pg") as url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
        # Direct connections beyond the server's limit would fail: that is the point, but not a figure.
        result = run(url, clients=clients, pool_size=pool_size, direct_clients=min(clients, max_connections - 10))
        result["server_max_connections"] = max_connections
    pooled = result["pooled"]
    print(f"{clients} client processes through PgBouncer (pool {pool_size}): at most "
          f"{pooled['max_server_connections']} server connections, {pooled['wall_s']} s; "
          f"directly, {result['direct']['clients']} clients held {result['direct']['max_server_connections']}")
    record("db_connections", result)


if __name__ == "__main__":
    main()
