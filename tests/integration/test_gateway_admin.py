"""/v1/admin through the app: tenants, keys (shown once, revocable), limits and budgets, usage, traces
and model overrides, all behind the admin scope."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stratus.db import generations
from stratus.db.connection import tenant_transaction
from stratus.llm.catalog import load_catalog
from tests.integration.gateway_support import admin_auth, auth, tenant_with_key


@pytest.fixture(scope="module")
def admin(pg_url: str) -> dict[str, str]:
    return admin_auth(pg_url)


@pytest.fixture
def tenant(client: TestClient, admin: dict[str, str]) -> str:
    tenant_id = f"acme-{uuid.uuid4().hex[:10]}"
    r = client.post("/v1/admin/tenants", json={"id": tenant_id, "name": "Acme"}, headers=admin)
    assert r.status_code == 201, r.text
    return tenant_id


def _error(r: Any) -> dict[str, Any]:
    return r.json()["error"]


def test_tenants_are_created_once_listed_and_read(client: TestClient, admin: dict[str, str], tenant: str) -> None:
    again = client.post("/v1/admin/tenants", json={"id": tenant, "name": "Other name"}, headers=admin)
    assert again.status_code == 200 and again.json()["created"] is False and again.json()["name"] == "Acme"

    listed = client.get("/v1/admin/tenants", headers=admin).json()
    assert listed["object"] == "list" and tenant in {t["id"] for t in listed["data"]}

    one = client.get(f"/v1/admin/tenants/{tenant}", headers=admin).json()
    assert one["id"] == tenant and one["name"] == "Acme" and isinstance(one["created_at"], int)
    assert one["limits"]["budget_usd"] is None and one["limits"]["requests_per_minute"] >= 1

    assert client.get("/v1/admin/tenants/no-such-tenant", headers=admin).status_code == 404
    bad = client.post("/v1/admin/tenants", json={"id": "Not Valid!"}, headers=admin)
    assert bad.status_code == 400 and _error(bad)["param"] == "id"


def test_a_key_is_shown_once_works_and_stops_when_revoked(client: TestClient, admin: dict[str, str],
                                                         tenant: str) -> None:
    # Given a key created for the tenant
    r = client.post(f"/v1/admin/tenants/{tenant}/keys", json={"name": "ci", "scopes": ["documents"]}, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith(f"sk-stratus-{created['prefix']}_") and created["tenant_id"] == tenant
    assert created["scopes"] == ["documents"] and created["revoked_at"] is None

    # Then it works, and lists never show its text (or its hash) again
    assert client.get("/v1/documents", headers=auth(created["key"])).status_code == 200
    (listed,) = client.get(f"/v1/admin/tenants/{tenant}/keys", headers=admin).json()["data"]
    assert listed["id"] == created["id"] and "key" not in listed and "key_hash" not in listed
    assert created["key"] not in str(listed)

    # When it is revoked, it gets 401 from the next request on
    revoked = client.delete(f"/v1/admin/tenants/{tenant}/keys/{created['id']}", headers=admin)
    assert revoked.status_code == 200 and isinstance(revoked.json()["revoked_at"], int)
    r = client.get("/v1/documents", headers=auth(created["key"]))
    assert r.status_code == 401 and _error(r)["code"] == "invalid_api_key"
    assert client.delete(f"/v1/admin/tenants/{tenant}/keys/{uuid.uuid4()}", headers=admin).status_code == 404


def test_key_requests_are_validated(client: TestClient, admin: dict[str, str], tenant: str) -> None:
    r = client.post(f"/v1/admin/tenants/{tenant}/keys", json={"scopes": ["everything"]}, headers=admin)
    assert r.status_code == 400 and _error(r)["param"] == "scopes.0"
    r = client.post(f"/v1/admin/tenants/{tenant}/keys", json={"requests_per_minute": 0}, headers=admin)
    assert r.status_code == 400 and _error(r)["param"] == "requests_per_minute"
    r = client.post("/v1/admin/tenants/no-such-tenant/keys", json={}, headers=admin)
    assert r.status_code == 404 and _error(r)["param"] == "tenant_id"


def test_limits_and_budget_are_set_cleared_and_reported(client: TestClient, admin: dict[str, str],
                                                       tenant: str) -> None:
    r = client.put(f"/v1/admin/tenants/{tenant}/limits", headers=admin,
                   json={"requests_per_minute": 5, "key_tokens_per_minute": 900, "budget_usd": 1.5,
                         "budget_period": "day"})
    assert r.status_code == 200, r.text
    limits = r.json()
    assert limits["requests_per_minute"] == 5 and limits["key_tokens_per_minute"] == 900
    assert limits["budget_usd"] == 1.5 and limits["budget_period"] == "day"

    # Only the fields sent change; null puts a limit back to its default
    r = client.put(f"/v1/admin/tenants/{tenant}/limits", json={"requests_per_minute": None}, headers=admin)
    after = r.json()
    assert after["requests_per_minute"] != 5 and "requests_per_minute" not in after["custom"]
    assert after["key_tokens_per_minute"] == 900 and after["budget_usd"] == 1.5
    assert client.get(f"/v1/admin/tenants/{tenant}/limits", headers=admin).json() == after

    usage = client.get(f"/v1/admin/tenants/{tenant}/usage", headers=admin).json()
    assert usage["budget_usd"] == 1.5 and usage["spent_usd"] == 0 and usage["remaining_usd"] == 1.5
    assert usage["period"] == "day" and usage["window"]["requests"] == 0

    for body, param in (({"tokens_per_minute": 0}, "tokens_per_minute"), ({"budget_usd": -1}, "budget_usd"),
                        ({"budget_period": "week"}, "budget_period"), ({"burst": 3}, "burst")):
        r = client.put(f"/v1/admin/tenants/{tenant}/limits", json=body, headers=admin)
        assert r.status_code == 400 and _error(r)["param"] == param, (body, r.text)
    assert client.put("/v1/admin/tenants/no-such-tenant/limits", json={}, headers=admin).status_code == 404


def test_traces_are_read_by_admins_and_by_their_own_tenant_only(client: TestClient, admin: dict[str, str],
                                                               pg_url: str) -> None:
    from stratus.gateway.traces import TraceRecord, record_trace

    owner, owner_key = tenant_with_key(pg_url, "tr")
    _, other_key = tenant_with_key(pg_url, "tr")
    request_id = f"req_{uuid.uuid4().hex}"
    record_trace(TraceRecord(request_id=request_id, tenant_id=owner, key_prefix="abc", route="/v1/chat/completions",
                             method="POST", status_code=200, model_alias="fast", input_tokens=12, output_tokens=3,
                             cost_usd=0.0001, chunk_ids=[4, 5], timings_ms={"generate": 12.5}, latency_ms=20.0,
                             status="ok", streamed=False))

    own = client.get(f"/v1/traces/{request_id}", headers=auth(owner_key))
    assert own.status_code == 200 and own.json()["chunk_ids"] == [4, 5] and own.json()["model_alias"] == "fast"
    assert client.get(f"/v1/admin/tenants/{owner}/traces/{request_id}", headers=admin).json() == own.json()
    listed = client.get(f"/v1/admin/tenants/{owner}/traces", params={"limit": 5}, headers=admin).json()["data"]
    # The recorded trace, and the owner's own read of it (every authenticated request is traced).
    assert request_id in [t["request_id"] for t in listed] and {t["tenant_id"] for t in listed} == {owner}
    assert {t["route"] for t in listed} == {"/v1/chat/completions", f"/v1/traces/{request_id}"}

    # Another tenant's key, or the right id under another tenant, finds nothing
    assert client.get(f"/v1/traces/{request_id}", headers=auth(other_key)).status_code == 404
    other = next(t["id"] for t in client.get("/v1/admin/tenants", headers=admin).json()["data"] if t["id"] != owner)
    assert client.get(f"/v1/admin/tenants/{other}/traces/{request_id}", headers=admin).status_code == 404


def test_model_overrides_are_checked_against_the_catalog(client: TestClient, admin: dict[str, str], tenant: str,
                                                         db: Any) -> None:
    catalog = load_catalog()
    alias = catalog.default_alias
    chosen = sorted(catalog.deployments)[:2]

    r = client.put(f"/v1/admin/tenants/{tenant}/models/{alias}", json={"deployments": chosen}, headers=admin)
    assert r.status_code == 200 and r.json()["deployments"] == chosen and r.json()["override"] is True
    with tenant_transaction(tenant, db):
        assert generations.model_override(db, tenant, alias) == chosen

    r = client.put(f"/v1/admin/tenants/{tenant}/models/{alias}", json={"deployments": ["gpt-nonexistent"]},
                   headers=admin)
    assert r.status_code == 400 and _error(r)["param"] == "deployments"
    r = client.put(f"/v1/admin/tenants/{tenant}/models/no-such-alias", json={"deployments": chosen}, headers=admin)
    assert r.status_code == 404 and _error(r)["code"] == "model_not_found"
    r = client.put(f"/v1/admin/tenants/{tenant}/models/{alias}", json={"deployments": []}, headers=admin)
    assert r.status_code == 400 and _error(r)["param"] == "deployments"

    r = client.delete(f"/v1/admin/tenants/{tenant}/models/{alias}", headers=admin)
    assert r.status_code == 200 and r.json()["override"] is False
    assert r.json()["deployments"] == catalog.aliases[alias]
    with tenant_transaction(tenant, db):
        assert generations.model_override(db, tenant, alias) is None


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/admin/tenants"), ("POST", "/v1/admin/tenants"), ("GET", "/v1/admin/tenants/{t}/keys"),
    ("POST", "/v1/admin/tenants/{t}/keys"), ("PUT", "/v1/admin/tenants/{t}/limits"),
    ("GET", "/v1/admin/tenants/{t}/usage"), ("GET", "/v1/admin/tenants/{t}/traces"),
    ("DELETE", "/v1/admin/tenants/{t}/models/fast"),
])
def test_admin_routes_need_the_admin_scope(client: TestClient, pg_url: str, method: str, path: str) -> None:
    tenant_id, key = tenant_with_key(pg_url, "plain")  # inference + documents: everything but admin
    r = client.request(method, path.format(t=tenant_id), headers=auth(key), json={"id": "x"})
    assert r.status_code == 403 and _error(r)["code"] == "insufficient_scope", r.text
    assert client.request(method, path.format(t=tenant_id), json={}).status_code == 401
