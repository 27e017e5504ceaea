"""Guard policies through the admin API: stored per tenant, merged over the defaults, isolated."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import create_tenant
from tests.integration.gateway_support import admin_auth


@pytest.fixture(scope="module")
def admin(pg_url: str) -> dict[str, str]:
    return admin_auth(pg_url)


@pytest.fixture
def tenant(pg_url: str) -> str:
    return create_tenant(pg_url, "gp")


def _rails(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()["rails"]


def test_a_tenant_starts_on_the_defaults_and_keeps_its_changes(client: TestClient, admin: dict[str, str],
                                                               tenant: str) -> None:
    url = f"/v1/admin/tenants/{tenant}/guard"
    assert _rails(client.get(url, headers=admin))["injection"] == {"action": "block", "threshold": None,
                                                                    "detector": "ngram"}

    changed = _rails(client.put(url, json={"rails": {"injection": {"action": "flag", "threshold": 0.7,
                                                                   "detector": "embedding"}}}, headers=admin))
    assert changed["injection"] == {"action": "flag", "threshold": 0.7, "detector": "embedding"}
    # A later change to another rail keeps the first one; replace goes back to the defaults plus the change.
    later = _rails(client.put(url, json={"rails": {"pii": {"action": "flag"}}}, headers=admin))
    assert later["injection"]["action"] == "flag" and later["pii"]["action"] == "flag"
    fresh = _rails(client.put(url, json={"rails": {"pii": {"action": "off"}}, "replace": True}, headers=admin))
    assert fresh["injection"]["action"] == "block" and fresh["pii"]["action"] == "off"
    assert _rails(client.get(url, headers=admin)) == fresh


def test_bad_policies_and_unknown_tenants_are_refused(client: TestClient, admin: dict[str, str],
                                                      tenant: str) -> None:
    r = client.put(f"/v1/admin/tenants/{tenant}/guard", json={"rails": {"injection": {"action": "redact"}}},
                   headers=admin)
    assert r.status_code == 400 and r.json()["error"]["param"] == "rails.injection.action"
    r = client.put("/v1/admin/tenants/no-such-tenant/guard", json={"rails": {"pii": {"action": "off"}}},
                   headers=admin)
    assert r.status_code == 404
    assert client.get("/v1/admin/tenants/no-such-tenant/guard", headers=admin).status_code == 404


def test_one_tenants_policy_is_not_anothers(client: TestClient, admin: dict[str, str], pg_url: str) -> None:
    first, second = create_tenant(pg_url, "gp"), create_tenant(pg_url, "gp")
    client.put(f"/v1/admin/tenants/{first}/guard", json={"rails": {"canary": {"action": "off"}}}, headers=admin)
    assert _rails(client.get(f"/v1/admin/tenants/{second}/guard", headers=admin))["canary"]["action"] == "block"
