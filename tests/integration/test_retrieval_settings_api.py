"""A tenant's reranker through the admin API: stored per tenant, null follows the deployment, isolated."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import create_tenant
from tests.integration.gateway_support import admin_auth


@pytest.fixture(scope="module")
def admin(pg_url: str) -> dict[str, str]:
    return admin_auth(pg_url)


def test_a_tenant_follows_the_default_until_it_chooses(client: TestClient, admin: dict[str, str],
                                                       pg_url: str) -> None:
    tenant, other = create_tenant(pg_url, "rs"), create_tenant(pg_url, "rs")
    url = f"/v1/admin/tenants/{tenant}/retrieval"
    # Given a tenant with no row: it follows the deployment (reranker none by default)
    r = client.get(url, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"object": "retrieval_settings", "tenant_id": tenant, "reranker": None, "rerank_model": None,
                        "effective": {"reranker": "none", "rerank_model": None}}
    # When it chooses Bedrock with Cohere Rerank 3.5
    r = client.put(url, json={"reranker": "bedrock", "rerank_model": "cohere.rerank-v3-5:0"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["effective"] == {"reranker": "bedrock", "rerank_model": "cohere.rerank-v3-5:0"}
    assert client.get(url, headers=admin).json()["reranker"] == "bedrock"
    # Then another tenant still follows the default
    assert client.get(f"/v1/admin/tenants/{other}/retrieval", headers=admin).json()["effective"]["reranker"] == "none"
    # And bedrock without a model takes the deployment's default model
    r = client.put(url, json={"reranker": "bedrock"}, headers=admin)
    assert r.json()["effective"] == {"reranker": "bedrock", "rerank_model": "amazon.rerank-v1:0"}


def test_bad_choices_and_unknown_tenants_are_refused(client: TestClient, admin: dict[str, str], pg_url: str) -> None:
    tenant = create_tenant(pg_url, "rs")
    r = client.put(f"/v1/admin/tenants/{tenant}/retrieval", json={"reranker": "colbert"}, headers=admin)
    assert r.status_code in (400, 422) and r.json()["error"]["param"] == "reranker"
    r = client.put(f"/v1/admin/tenants/{tenant}/retrieval", json={"rerank_model": "cohere.rerank-v9:0"},
                   headers=admin)
    assert r.status_code in (400, 422) and r.json()["error"]["param"] == "rerank_model"
    assert client.put("/v1/admin/tenants/no-such-tenant/retrieval", json={}, headers=admin).status_code == 404
    assert client.get("/v1/admin/tenants/no-such-tenant/retrieval", headers=admin).status_code == 404
