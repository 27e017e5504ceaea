"""Two-key promotion through the HTTP API: a tenant protects its `prod` label; one admin key requests a
promotion with the eval gate's result attached, the same key cannot approve it (403 saying why), a second
key does, and the label moves only then; every step is an audit row."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from stratus import audit
from stratus.db.connection import connect
from stratus.gateway.keys import create_key
from tests.integration.gateway_support import auth, tenant_with_key

GATE = {"passed": True, "suite": "rag-answer", "cases": 12, "passed_cases": 12, "problems": []}


@pytest.fixture
def setup(pg_url: str) -> dict[str, Any]:
    """A tenant with two admin keys, and a prompt published at v1 and v2 (as the owner publishes)."""
    tenant, first = tenant_with_key(pg_url, "appr", scopes=["admin"])
    conn = connect(pg_url)
    try:
        second, _ = create_key(conn, tenant, name="second", scopes=("admin",))
    finally:
        conn.close()
    name = f"appr-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as owner:
        for version in (1, 2):
            owner.execute("INSERT INTO prompt_versions (name, version, content, content_hash) VALUES (%s, %s, %s, %s)",
                          [name, version, f'{{"template": "v{version}"}}', f"{version}" * 64])
    return {"tenant": tenant, "a": auth(first), "b": auth(second), "name": name, "url": pg_url}


def test_a_protected_label_moves_only_when_a_second_key_approves(client: TestClient, setup: Any) -> None:
    t, name, a, b = setup["tenant"], setup["name"], setup["a"], setup["b"]
    base = f"/v1/admin/tenants/{t}"
    # An unprotected label moves at once
    r = client.post(f"{base}/prompts/{name}/promote", json=_ask(1), headers=a)
    assert r.status_code == 200 and r.json()["version"] == 1, r.text
    assert client.put(f"{base}/approvals", json={"protected_labels": ["prod"]}, headers=a).json()[
        "protected_labels"] == ["prod"]

    # Now a promotion of prod is a request, with the gate's result attached, and the label stays
    r = client.post(f"{base}/prompts/{name}/promote", json=_ask(2), headers=a)
    assert r.status_code == 202, r.text
    request = r.json()
    assert request["status"] == "pending" and request["eval_gate"] == GATE
    assert _served(setup) == 1

    # The requesting key cannot approve its own request
    r = client.post(f"{base}/promotions/{request['id']}/approve", json={}, headers=a)
    assert r.status_code == 403 and "different admin key" in r.json()["error"]["message"]
    assert _served(setup) == 1

    # A second key approves: the label moves
    pending = client.get(f"{base}/promotions", params={"status": "pending"}, headers=b).json()["data"]
    assert [p["id"] for p in pending] == [request["id"]]
    r = client.post(f"{base}/promotions/{request['id']}/approve", json={"reason": "gate passed"}, headers=b)
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    assert _served(setup) == 2
    again = client.post(f"{base}/promotions/{request['id']}/approve", json={}, headers=b)
    assert again.status_code == 400 and again.json()["error"]["param"] == "request_id"

    with psycopg.connect(setup["url"]) as owner:
        rows = list(audit.stored_rows(owner, t))
    assert [r["action"] for r in rows] == ["prompt.promote", "approval_settings.set", "promotion.request",
                                           "promotion.approve"]
    requested, approved = rows[2], rows[3]
    assert requested["after"]["eval_gate"] == GATE and requested["before"] == {"version": 1}
    assert requested["actor_key_id"] != approved["actor_key_id"]
    assert approved["after"]["decided_by"] == approved["actor_key_id"] and audit.verify(rows, t).ok


def test_failed_gates_rejections_and_bad_input(client: TestClient, setup: Any) -> None:
    t, name, a, b = setup["tenant"], setup["name"], setup["a"], setup["b"]
    base = f"/v1/admin/tenants/{t}"
    client.put(f"{base}/approvals", json={"protected_labels": ["prod"]}, headers=a)
    failed = {**GATE, "passed": False, "problems": ["faithfulness 0.61 < 0.8"]}
    r = client.post(f"{base}/prompts/{name}/promote", json={"version": 2, "label": "prod", "eval_gate": failed},
                    headers=a)
    assert r.status_code == 400 and r.json()["error"]["param"] == "eval_gate.passed"
    r = client.post(f"{base}/prompts/{name}/promote", json={"version": 2, "label": "prod"}, headers=a)
    assert r.status_code == 400 and r.json()["error"]["param"] == "eval_gate"
    r = client.post(f"{base}/prompts/{name}/promote", json={"version": 9, "label": "prod", "eval_gate": GATE},
                    headers=a)
    assert r.status_code == 404 and r.json()["error"]["param"] == "version"

    request = client.post(f"{base}/prompts/{name}/promote", json={"version": 2, "label": "prod", "eval_gate": GATE},
                          headers=a).json()
    r = client.post(f"{base}/promotions/{request['id']}/reject", json={"reason": "not now"}, headers=b)
    assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["reason"] == "not now"
    assert _served(setup) is None
    missing = client.post(f"{base}/promotions/{uuid.uuid4()}/approve", json={}, headers=b)
    assert missing.status_code == 404
    bad = client.get(f"{base}/promotions", params={"status": "done"}, headers=b)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
    assert [p["status"] for p in client.get(f"{base}/promotions", headers=b).json()["data"]] == ["rejected"]


def _ask(version: int) -> dict[str, Any]:
    return {"version": version, "label": "prod", "eval_gate": GATE}


def _served(setup: dict[str, Any]) -> int | None:
    from stratus.prompts.registry import current_version

    conn = connect(setup["url"])
    try:
        return current_version(conn, setup["name"], "prod", setup["tenant"])
    finally:
        conn.close()
