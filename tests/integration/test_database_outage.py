"""A database outage is a 503 with retry-after in the OpenAI error shape on every route, /health reports
the database, and a kept connection the server dropped (a failover, a terminated backend) is reopened
without a cold start."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from stratus.db import connection as db
from stratus.errors import DatabaseUnavailable
from stratus.gateway import deps
from stratus_tools.local.ports import free_port
from stratus_tools.local.stack import EnvOverlay
from tests.integration.gateway_support import auth, tenant_with_key

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/fast", None),
    ("POST", "/v1/chat/completions", {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/chat/completions",
     {"model": "fast", "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
    ("GET", "/v1/documents", None),
    ("GET", "/v1/traces/req_x", None),
]


def _forget_health() -> None:
    deps._health = None


@pytest.fixture
def unreachable(pg_url: str) -> Iterator[TestClient]:
    """The gateway with DATABASE_URL at a loopback port nothing listens on."""
    from stratus.gateway.app import create_app

    deps.close_idle()  # pooled connections point at the live database
    db.close_connection()
    _forget_health()
    env = EnvOverlay()
    env.set({"DATABASE_URL": f"postgresql://stratus@127.0.0.1:{free_port()}/stratus"})
    try:
        with TestClient(create_app(), raise_server_exceptions=False) as client:
            yield client
    finally:
        env.restore()
        deps.close_idle()
        db.close_connection()
        _forget_health()


def _is_outage(r: Any) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["retry-after"] == "2"
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "database_unavailable" and error["type"] == "api_error"
    assert "127.0.0.1" not in error["message"]  # nothing of the driver's text leaves


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_answers_503_with_retry_after(unreachable: TestClient, method: str, path: str,
                                                  body: dict[str, Any] | None) -> None:
    r = unreachable.request(method, path, json=body, headers=auth("sk-stratus-anything"))
    _is_outage(r)


def test_health_reports_the_database(unreachable: TestClient) -> None:
    r = unreachable.get("/health")
    assert r.status_code == 503 and r.json() == {"status": "unavailable", "database": "unavailable"}
    assert r.headers["retry-after"]
    # The Web Adapter's readiness check is liveness only: a cold start comes up and answers the 503s.
    live = unreachable.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "ok"}


def test_health_is_ok_with_the_database(pg_url: str) -> None:
    from stratus.gateway.app import create_app

    _forget_health()
    with TestClient(create_app()) as client:
        r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}


def _terminate_app_backends(pg_url: str) -> int:
    """Terminates the application role's backends and waits until they are gone (the server has sent each
    client its FATAL error and closed the socket), as after a failover."""
    import time

    query = "FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()"
    with psycopg.connect(pg_url, autocommit=True) as owner:
        row = owner.execute(f"SELECT count(pg_terminate_backend(pid)) {query}", [db.APP_ROLE]).fetchone()
        deadline = time.monotonic() + 5
        while owner.execute(f"SELECT count(*) {query}", [db.APP_ROLE]).fetchone() != (0,):
            assert time.monotonic() < deadline, "the backends did not exit"
            time.sleep(0.02)
    return int(row[0]) if row else 0


def test_the_gateway_reconnects_after_its_backends_are_terminated(pg_url: str) -> None:
    from stratus.gateway.app import create_app

    _, key = tenant_with_key(pg_url, "outage")
    with TestClient(create_app()) as client:
        assert client.get("/v1/models", headers=auth(key)).status_code == 200
        assert _terminate_app_backends(pg_url) >= 1  # the pooled connection's server side is gone
        # The dropped connection is noticed before reuse: not even the first request after fails.
        assert client.get("/v1/models", headers=auth(key)).status_code == 200
        assert client.get("/v1/models", headers=auth(key)).status_code == 200


def test_a_kept_connection_lost_before_the_first_statement_is_retried_once(pg_url: str, tenant_id: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    db.close_connection()
    first = db.get_connection()
    with db.tenant_transaction(tenant_id) as conn:
        assert conn.execute("SELECT current_setting('app.tenant_id')").fetchone() == (tenant_id,)
    _terminate_app_backends(pg_url)
    monkeypatch.setattr(db, "_dropped", lambda conn: False)  # as if the drop had not reached the socket yet
    with db.tenant_transaction(tenant_id) as conn:  # the failure is in the first statement: retried
        assert conn is not first and conn.execute("SELECT 1").fetchone() == (1,)
    assert first.closed


def test_a_connection_lost_mid_transaction_is_503_then_the_next_one_works(pg_url: str, tenant_id: str) -> None:
    db.close_connection()
    with pytest.raises(DatabaseUnavailable), db.tenant_transaction(tenant_id) as conn:
        conn.execute("SELECT 1")
        _terminate_app_backends(pg_url)
        conn.execute("SELECT 1")  # the caller's statements ran: not retried, an outage
    assert conn.closed
    with db.tenant_transaction(tenant_id) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_a_read_only_server_is_an_outage_and_the_connection_is_dropped(pg_url: str, tenant_id: str) -> None:
    conn = db.connect(pg_url)
    conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")  # as a failed-over old writer
    conn.commit()
    with pytest.raises(DatabaseUnavailable), db.tenant_transaction(tenant_id, conn) as c:
        c.execute("INSERT INTO tenants (id) VALUES (%s)", [tenant_id + "-x"])
    assert conn.closed


def test_an_unreachable_server_is_database_unavailable() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        db.connect(f"postgresql://stratus@127.0.0.1:{free_port()}/stratus")
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


def test_without_the_socket_check_only_the_first_request_after_may_fail(pg_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from stratus.gateway.app import create_app

    _, key = tenant_with_key(pg_url, "outage")
    monkeypatch.setattr(db, "_dropped", lambda conn: False)  # e.g. a proxy that keeps the client socket open
    deps.close_idle()  # one kept connection, as in a warm Lambda (each dead one costs one request)
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        assert client.get("/v1/models", headers=auth(key)).status_code == 200
        _terminate_app_backends(pg_url)
        first = client.get("/v1/models", headers=auth(key))
        assert first.status_code in (200, 503)
        if first.status_code == 503:
            _is_outage(first)
        assert client.get("/v1/models", headers=auth(key)).status_code == 200


def test_a_settlement_the_database_missed_is_retried_not_left_reserved(pg_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The database went away between the answer and its settlement (a restart): the after-response writes
    are retried, so the reservation is settled and the trace written, not left holding the budget."""
    from contextlib import contextmanager

    from stratus.gateway import context, pool
    from stratus.gateway.app import create_app

    tenant, key = tenant_with_key(pg_url, "settle")
    real_lease, failures = pool.lease, []

    @contextmanager
    def flaky_lease() -> Iterator[psycopg.Connection]:
        if not failures:
            failures.append(1)
            raise DatabaseUnavailable("the database is unavailable (OperationalError)")
        with real_lease() as conn:
            yield conn

    monkeypatch.setattr(pool, "lease", flaky_lease)
    monkeypatch.setattr(context, "SETTLE_RETRY_S", (0.01,))
    with TestClient(create_app()) as client:  # the background task has run when the response returns
        r = client.post("/v1/chat/completions", headers=auth(key),
                        json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and failures == [1]
    with psycopg.connect(pg_url, autocommit=True) as owner:
        left = owner.execute("SELECT count(*) FROM budget_reservations WHERE tenant_id = %s", [tenant]).fetchone()
        traced = owner.execute("SELECT count(*) FROM traces WHERE tenant_id = %s AND request_id = %s",
                               [tenant, r.headers["x-request-id"]]).fetchone()
    assert left == (0,) and traced == (1,)
