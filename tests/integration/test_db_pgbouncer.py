"""Application connections through PgBouncer in transaction mode (the local stand-in for RDS Proxy): they
log in as stratus_app, cannot leave Row Level Security, keep tenants apart when transactions of
different tenants share one server connection, and many client processes are served by a small pool."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from stratus.db import documents
from stratus.db.connection import APP_ROLE, app_url, connect, tenant_transaction
from stratus_tools.local.pgbouncer import PgBouncer, find_pgbouncer, pgbouncer


def _require_pgbouncer() -> None:
    if find_pgbouncer() is None:
        pytest.fail("pgbouncer is not installed: `make pgbouncer` installs it (Debian package pgbouncer)")


@pytest.fixture(scope="module")
def bouncer(pg_url: str) -> Iterator[PgBouncer]:
    _require_pgbouncer()
    with pgbouncer(pg_url, pool_size=4) as b:
        yield b


@pytest.fixture(scope="module")
def single(pg_url: str) -> Iterator[PgBouncer]:
    """One server connection for every client: transactions of all clients take turns on it."""
    _require_pgbouncer()
    with pgbouncer(pg_url, pool_size=1) as b:
        yield b


def _document(tenant: str, key: str) -> None:
    with connect() as conn, tenant_transaction(tenant, conn):
        documents.lock_document(conn, tenant, key)


def test_app_connections_log_in_as_the_application_role(bouncer: PgBouncer) -> None:
    with connect(bouncer.url) as conn:
        user, session_user, superuser, bypass = conn.execute(
            "SELECT current_user, session_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
    assert (user, session_user, superuser, bypass) == (APP_ROLE, APP_ROLE, False, False)


def test_the_owner_url_becomes_the_application_role_without_its_password() -> None:
    info = psycopg.conninfo.conninfo_to_dict(app_url("postgresql://stratus_admin:s3cret@db.example:5432/stratus"))
    assert info == {"user": "stratus_app", "host": "db.example", "port": "5432", "dbname": "stratus"}


def test_direct_app_connections_log_in_as_the_application_role_too(db: psycopg.Connection) -> None:
    assert db.execute("SELECT current_user, session_user").fetchone() == (APP_ROLE, APP_ROLE)


def test_the_pooler_admits_only_the_application_role(bouncer: PgBouncer) -> None:
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(bouncer.url_for("postgres"), connect_timeout=5).close()


def test_reset_role_cannot_escalate(bouncer: PgBouncer, new_tenant) -> None:
    victim, attacker = new_tenant(), new_tenant()
    _document(victim, "payroll.md")
    with connect(bouncer.url) as conn:
        with tenant_transaction(attacker, conn):
            # What an injected statement could try: there is no other role behind this session.
            conn.execute("RESET ROLE")
            assert conn.execute("SELECT current_user, session_user").fetchone() == (APP_ROLE, APP_ROLE)
            assert conn.execute("SELECT count(*) FROM documents WHERE tenant_id = %s", [victim]).fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM tenants WHERE id = %s", [victim]).fetchone() == (0,)
        for statement in ("SET ROLE postgres", "SET SESSION AUTHORIZATION postgres", "SET row_security = off"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), tenant_transaction(attacker, conn):
                conn.execute(statement)
                # row_security = off does not switch RLS off: it makes a query that RLS filters fail.
                conn.execute("SELECT count(*) FROM documents").fetchone()


def test_tenants_stay_apart_when_their_transactions_share_one_server_connection(single: PgBouncer,
                                                                                 new_tenant) -> None:
    a, b = new_tenant(), new_tenant()
    _document(a, "a.md")
    _document(b, "b.md")
    conn_a, conn_b = connect(single.url), connect(single.url)
    try:
        backends = set()
        for _ in range(5):  # interleaved: a, b, a, b, ... each a transaction on the one pooled connection
            for tenant, conn in ((a, conn_a), (b, conn_b)):
                with tenant_transaction(tenant, conn):
                    pid, setting, keys = conn.execute(
                        "SELECT pg_backend_pid(), current_setting('app.tenant_id'),"
                        " (SELECT array_agg(source_key ORDER BY source_key) FROM documents)").fetchone()
                backends.add(pid)
                assert (setting, keys) == (tenant, [f"{'a' if tenant == a else 'b'}.md"])
            # Between transactions the binding is gone: a statement outside tenant_transaction sees nothing.
            assert conn_a.execute("SELECT current_setting('app.tenant_id', true),"
                                  " (SELECT count(*) FROM documents)").fetchone() in (("", 0), (None, 0))
            conn_a.rollback()
        assert len(backends) == 1  # both clients' transactions really ran on the same server connection
    finally:
        conn_a.close()
        conn_b.close()


def test_concurrent_tenants_on_one_server_connection_never_see_each_other(single: PgBouncer, new_tenant) -> None:
    tenants = [new_tenant() for _ in range(4)]
    for t in tenants:
        _document(t, f"{t}.md")
    failures: list[str] = []

    def client(tenant: str) -> None:
        try:
            with connect(single.url) as conn:
                for _ in range(10):
                    with tenant_transaction(tenant, conn):
                        seen = conn.execute("SELECT array_agg(tenant_id) FROM documents").fetchone()[0]
                    if seen != [tenant]:
                        failures.append(f"{tenant} saw {seen}")
        except Exception as err:  # noqa: BLE001 - reported below
            failures.append(repr(err))

    threads = [threading.Thread(target=client, args=(t,)) for t in tenants]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert failures == []


def test_fifty_client_processes_hold_at_most_the_pool_size_of_server_connections(pg_url: str) -> None:
    """The measured figure, through bench/db_connections.py at a small scale (`make bench` records the full
    run in bench/results/db_connections.json)."""
    _require_pgbouncer()
    from bench import db_connections

    result = db_connections.run(pg_url, clients=50, pool_size=4, transactions=3, sleep_ms=20)
    pooled = result["pooled"]
    print(json.dumps({k: pooled[k] for k in ("clients", "max_server_connections", "distinct_server_backends",
                                             "wall_s", "tenant_leaks")} | {"pool_size": 4}))
    assert pooled["users"] == [f"{APP_ROLE}/{APP_ROLE}"]
    assert pooled["server_connection_samples"] > 0
    assert 1 <= pooled["max_server_connections"] <= 4
    assert pooled["distinct_server_backends"] <= 4
    assert pooled["tenant_leaks"] == 0


def test_a_kept_connection_the_server_closed_while_idle_is_replaced(pg_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """RDS Proxy closes client connections idle past IdleClientTimeout, and a frozen Lambda sleeps through
    it: a kept connection idle past REVALIDATE_AFTER_S is checked before reuse."""
    from stratus.db import connection

    alive, dropped = connect(pg_url), connect(pg_url)
    try:
        pid = dropped.execute("SELECT pg_backend_pid()").fetchone()[0]
        dropped.rollback()
        with psycopg.connect(pg_url, autocommit=True) as owner:
            owner.execute("SELECT pg_terminate_backend(%s)", [pid])
        monkeypatch.setattr(connection, "REVALIDATE_AFTER_S", 0.0)  # both count as idle long enough
        time.sleep(0.01)
        assert connection.reusable(alive)
        assert not connection.reusable(dropped) and dropped.closed
        with tenant_transaction("anyone", alive):  # the check left the live one idle and usable
            assert alive.execute("SELECT current_user").fetchone() == (APP_ROLE,)
    finally:
        alive.close()
        dropped.close()
