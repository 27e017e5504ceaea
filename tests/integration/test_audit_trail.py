"""The audit trail through the HTTP API: every admin change leaves one row in its own transaction, with
who, what (before/after, never a secret), the request id and the source address; rows are append-only for
the application role, hash-chained per tenant (concurrent writers never fork it), and verification catches
a row edited, deleted or reordered by the owner."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from stratus import audit
from stratus.db.connection import connect, tenant_transaction
from tests.integration.gateway_support import auth, tenant_with_key


@pytest.fixture
def own(pg_url: str) -> tuple[str, dict[str, str]]:
    """A tenant with an admin key of its own: (tenant id, its headers)."""
    tenant, key = tenant_with_key(pg_url, "aud", scopes=["admin", "documents"])
    return tenant, auth(key)


@pytest.fixture
def owner(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


def _rows(owner: psycopg.Connection, tenant: str) -> list[dict[str, Any]]:
    return list(audit.stored_rows(owner, tenant))


def _key_id(client: TestClient, tenant: str, headers: dict[str, str]) -> str:
    (key,) = client.get(f"/v1/admin/tenants/{tenant}/keys", headers=headers).json()["data"]
    return str(key["id"])


def test_each_admin_change_is_recorded_with_who_what_and_where(client: TestClient, own: Any, owner: Any) -> None:
    tenant, headers = own
    me = _key_id(client, tenant, headers)
    r = client.put(f"/v1/admin/tenants/{tenant}/limits", json={"requests_per_minute": 7},
                   headers={**headers, "x-request-id": "audit-limits-1"})
    assert r.status_code == 200, r.text
    created = client.post(f"/v1/admin/tenants/{tenant}/keys", json={"name": "ci"}, headers=headers).json()
    assert client.delete(f"/v1/admin/tenants/{tenant}/keys/{created['prefix']}", headers=headers).status_code == 200
    assert client.put(f"/v1/admin/tenants/{tenant}/guard", json={"rails": {"injection": {"threshold": 0.7}}},
                      headers=headers).status_code == 200
    assert client.put(f"/v1/admin/tenants/{tenant}/retrieval", json={"reranker": "none"},
                      headers=headers).status_code == 200
    other = f"aud-new-{uuid.uuid4().hex[:8]}"
    assert client.post("/v1/admin/tenants", json={"id": other}, headers=headers).status_code == 201
    assert client.post("/v1/admin/tenants", json={"id": other}, headers=headers).status_code == 200  # no change

    rows = _rows(owner, tenant)
    assert [r["action"] for r in rows] == ["limits.set", "key.create", "key.revoke", "guard_policy.set",
                                           "retrieval_settings.set"]
    limits = rows[0]
    assert limits["actor_key_id"] == me and limits["actor_tenant"] == tenant and limits["actor_scopes"] == [
        "admin", "documents"]
    assert limits["request_id"] == "audit-limits-1" and limits["source_ip"]
    assert limits["after"]["requests_per_minute"] == 7 and limits["before"]["requests_per_minute"] != 7
    # Secrets never reach a row: not the key text, not its hash
    assert created["key"] not in str(rows) and "key_hash" not in str(rows)
    assert rows[1]["after"]["id"] == created["id"] and rows[2]["before"]["revoked_at"] is None
    assert rows[2]["after"]["revoked_at"] is not None
    assert rows[3]["before"]["rails"]["injection"]["threshold"] != 0.7
    assert rows[3]["after"]["rails"]["injection"]["threshold"] == 0.7
    assert rows[4]["after"]["reranker"] == "none"
    assert [r["action"] for r in _rows(owner, other)] == ["tenant.create"]  # recorded once, in its own chain
    assert audit.verify(rows, tenant).ok


def test_model_overrides_are_recorded_before_and_after(client: TestClient, own: Any, owner: Any) -> None:
    from stratus.llm.catalog import load_catalog

    tenant, headers = own
    catalog = load_catalog()
    alias, chosen = catalog.default_alias, sorted(catalog.deployments)[:2]
    assert client.put(f"/v1/admin/tenants/{tenant}/models/{alias}", json={"deployments": chosen},
                      headers=headers).status_code == 200
    assert client.delete(f"/v1/admin/tenants/{tenant}/models/{alias}", headers=headers).status_code == 200
    put, cleared = _rows(owner, tenant)
    assert (put["action"], put["target"], put["before"]) == ("model_override.set", alias, {"deployments": None})
    assert put["after"]["deployments"] == chosen
    assert cleared["action"] == "model_override.clear" and cleared["before"] == {"deployments": chosen}
    assert cleared["after"]["override"] is False


def test_a_failed_change_leaves_no_row_and_a_failed_row_fails_the_change(
        client: TestClient, own: Any, owner: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant, headers = own
    assert client.delete(f"/v1/admin/tenants/{tenant}/keys/{uuid.uuid4()}", headers=headers).status_code == 404
    bad = client.put(f"/v1/admin/tenants/{tenant}/limits", json={"budget_period": "year"}, headers=headers)
    assert bad.status_code == 400
    assert _rows(owner, tenant) == []

    def broken(*args: Any, **kwargs: Any) -> None:
        raise psycopg.errors.InsufficientPrivilege("audit_log: permission denied")  # as a revoked grant would

    monkeypatch.setattr(audit, "record", broken)
    r = client.put(f"/v1/admin/tenants/{tenant}/limits", json={"requests_per_minute": 9}, headers=headers)
    assert r.status_code == 500
    monkeypatch.undo()
    limits = client.get(f"/v1/admin/tenants/{tenant}/limits", headers=headers).json()
    assert limits["requests_per_minute"] != 9 and _rows(owner, tenant) == []  # the change was rolled back


def test_the_application_role_can_only_append(pg_url: str, client: TestClient, own: Any) -> None:
    tenant, headers = own
    assert client.put(f"/v1/admin/tenants/{tenant}/limits", json={"tokens_per_minute": 5000},
                      headers=headers).status_code == 200
    conn = connect(pg_url)  # stratus_app, as the gateway logs in
    try:
        for statement in ("UPDATE audit_log SET target = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), tenant_transaction(tenant, conn):
                conn.execute(statement)
        with tenant_transaction(tenant, conn):  # it reads its own tenant's rows only
            assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 1
        with tenant_transaction(f"other-{uuid.uuid4().hex[:6]}", conn):
            assert conn.execute("SELECT count(*) FROM audit_log WHERE chain = %s", [tenant]).fetchone()[0] == 0
    finally:
        conn.close()


def test_concurrent_admin_calls_never_fork_the_chain(client: TestClient, own: Any, owner: Any) -> None:
    tenant, headers = own
    statuses: list[int] = []

    def change(i: int) -> None:
        r = client.put(f"/v1/admin/tenants/{tenant}/limits", json={"requests_per_minute": 100 + i}, headers=headers)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=change, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = _rows(owner, tenant)
    assert statuses == [200] * 12
    assert [r["seq"] for r in rows] == list(range(1, 13))
    assert audit.verify(rows, tenant).ok


def _three_rows(client: TestClient, own: Any) -> str:
    tenant, headers = own
    for rpm in (11, 12, 13):
        assert client.put(f"/v1/admin/tenants/{tenant}/limits", json={"requests_per_minute": rpm},
                          headers=headers).status_code == 200
    return str(tenant)


@pytest.mark.parametrize("tamper", [
    "UPDATE audit_log SET after = jsonb_set(after, '{requests_per_minute}', '99') WHERE chain = %s AND seq = 2",
    "UPDATE audit_log SET source_ip = '10.9.9.9' WHERE chain = %s AND seq = 1",
    "DELETE FROM audit_log WHERE chain = %s AND seq = 2",
    # reordered: rows 2 and 3 swap places (their seq), each keeping its own content and hashes
    "UPDATE audit_log SET seq = 1000 WHERE chain = %s AND seq = 2;"
    "UPDATE audit_log SET seq = 2 WHERE chain = %s AND seq = 3;"
    "UPDATE audit_log SET seq = 3 WHERE chain = %s AND seq = 1000",
], ids=["edited-change", "edited-source", "deleted", "reordered"])
def test_verify_catches_tampering_by_the_owner(client: TestClient, own: Any, owner: Any, tamper: str) -> None:
    tenant = _three_rows(client, own)
    assert audit.verify(_rows(owner, tenant), tenant).ok
    with owner.transaction():
        for statement in tamper.split(";"):
            owner.execute(statement, [tenant])
    verdict = audit.verify(_rows(owner, tenant), tenant)
    assert not verdict.ok, verdict


def test_the_audit_route_filters_pages_and_keeps_to_the_callers_tenant(client: TestClient, own: Any,
                                                                       pg_url: str) -> None:
    tenant, headers = own
    me = _key_id(client, tenant, headers)
    for rpm in (21, 22, 23):
        client.put(f"/v1/admin/tenants/{tenant}/limits", json={"requests_per_minute": rpm}, headers=headers)
    client.post(f"/v1/admin/tenants/{tenant}/keys", json={}, headers=headers)

    first = client.get("/v1/admin/audit", params={"action": "limits.set", "limit": 2}, headers=headers).json()
    assert [e["after"]["requests_per_minute"] for e in first["data"]] == [21, 22] and first["has_more"]
    rest = client.get("/v1/admin/audit", params={"action": "limits.set", "after": first["next_cursor"]},
                      headers=headers).json()
    assert [e["after"]["requests_per_minute"] for e in rest["data"]] == [23] and not rest["has_more"]
    everything = client.get("/v1/admin/audit", params={"actor": me}, headers=headers).json()["data"]
    assert [e["action"] for e in everything] == ["limits.set"] * 3 + ["key.create"]
    assert everything[0]["actor"] == {"key_id": me, "tenant_id": tenant, "scopes": ["admin", "documents"]}
    start = int(everything[-1]["at"])
    assert {e["action"] for e in client.get("/v1/admin/audit", params={"since": start + 3600},
                                            headers=headers).json()["data"]} == set()
    assert len(client.get("/v1/admin/audit", params={"until": start + 3600}, headers=headers).json()["data"]) == 4

    # Another tenant's admin sees none of it, and may not ask for it
    _, other_key = tenant_with_key(pg_url, "aud", scopes=["admin"])
    assert client.get("/v1/admin/audit", headers=auth(other_key)).json()["data"] == []
    r = client.get("/v1/admin/audit", params={"tenant": tenant}, headers=auth(other_key))
    assert r.status_code == 403 and r.json()["error"]["param"] == "tenant"
    bad = client.get("/v1/admin/audit", params={"since": "yesterday"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"


def test_writers_on_their_own_connections_serialise_per_tenant(pg_url: str, own: Any, owner: Any) -> None:
    """Eight connections released together by a barrier each write a row to one chain: the advisory lock
    orders them, so none hits the (chain, seq) constraint and the chain has no gap or fork."""
    tenant, _ = own
    barrier, errors = threading.Barrier(8), []

    def writer(i: int) -> None:
        conn = connect(pg_url)
        try:
            actor = audit.Actor(key_id=f"k{i}", tenant_id=tenant, scopes=("admin",))
            barrier.wait(timeout=30)
            with audit.change(conn, tenant, actor, "limits.set", tenant) as change:
                change.after = {"writer": i}
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = _rows(owner, tenant)
    assert errors == [] and [r["seq"] for r in rows] == list(range(1, 9))
    assert sorted(r["after"]["writer"] for r in rows) == list(range(8)) and audit.verify(rows, tenant).ok
