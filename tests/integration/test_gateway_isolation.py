"""Tenant isolation through every endpoint: tenant B, holding a valid key of its own, tries to reach
tenant A's documents, chunks (through RAG answers, workflow and streamed), cached answers, traces and
keys, and gets nothing: 404s for A's ids, answers that never cite A's chunks, cache misses, 403s.

The answers come from the offline provider through the real query workflow (moto's Step Functions
calling the local Retrieve and Generate handlers); documents are ingested through the pipeline directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stratus.db.connection import connect
from stratus.gateway.traces import get_trace
from stratus_tools.local.stack import LocalStack
from tests.integration.gateway_support import auth, tenant_with_key
from tests.support.local_stack import ingest_bytes, running_stack

QUESTION = "Which coolant does the Zorblax reactor use, and at what pressure?"
SECRET_DOC = (b"# Zorblax reactor\n\nThe Zorblax reactor is cooled with argon-7 held at 19 bar. The coolant loop is"
              b" inspected every 40 days by the night shift.\n")
B_DOC = b"# Office\n\nThe office is open from nine to five. Visitors sign in at the front desk.\n"


@pytest.fixture(scope="module")
def stack(pg_url: str) -> Iterator[LocalStack]:
    yield from running_stack("test-gateway-isolation")


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> Iterator[TestClient]:
    from stratus.gateway.app import create_app

    with TestClient(create_app()) as c:
        yield c


@pytest.fixture(scope="module")
def tenants(stack: LocalStack, pg_url: str) -> dict[str, Any]:
    a, a_key = tenant_with_key(pg_url, "iso-a")
    b, b_key = tenant_with_key(pg_url, "iso-b")
    ingest_bytes(a, "reactor/zorblax.md", SECRET_DOC)
    ingest_bytes(b, "office.md", B_DOC)
    return {"a": a, "a_key": a_key, "a_auth": auth(a_key), "b": b, "b_key": b_key, "b_auth": auth(b_key)}


@pytest.fixture(scope="module")
def a_answer(client: TestClient, tenants: dict[str, Any]) -> dict[str, Any]:
    """Tenant A's own RAG answer to the question (cited from its document), asked first."""
    r = client.post("/v1/chat/completions", headers=tenants["a_auth"],
                    json={"model": "rag/fast", "messages": [{"role": "user", "content": QUESTION}]})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert "argon-7" in answer["choices"][0]["message"]["content"]
    assert {c["source_key"] for c in answer["citations"]} == {"reactor/zorblax.md"}
    return answer


def _a_document(client: TestClient, tenants: dict[str, Any]) -> dict[str, Any]:
    (doc,) = client.get("/v1/documents", headers=tenants["a_auth"]).json()["data"]
    return doc


def _trace(pg_url: str, tenant_id: str, request_id: str, *, wait: bool = True) -> dict[str, Any] | None:
    """The trace row (written after the response: wait briefly for the background task)."""
    conn = connect(pg_url)
    try:
        for _ in range(100 if wait else 1):
            row = get_trace(conn, tenant_id, request_id)
            if row is not None:
                return row
            time.sleep(0.02)
        return None
    finally:
        conn.close()


def _stream(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", "/v1/chat/completions", headers=headers, json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[len("data: "):]) for line in lines[:-1]]


# --- documents ---------------------------------------------------------------------------------------
def test_another_tenants_document_cannot_be_read_listed_or_deleted(client: TestClient,
                                                                   tenants: dict[str, Any]) -> None:
    doc = _a_document(client, tenants)
    b = tenants["b_auth"]

    assert [d["key"] for d in client.get("/v1/documents", headers=b).json()["data"]] == ["office.md"]
    for status in ("ready", "failed", "pending", "deleted"):
        listed = client.get("/v1/documents", params={"status": status}, headers=b).json()["data"]
        assert doc["id"] not in {d["id"] for d in listed}
    # The same answer as for an id that does not exist: not 403, which would confirm that it does
    for method in ("GET", "DELETE"):
        r = client.request(method, f"/v1/documents/{doc['id']}", headers=b)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = client.get("/v1/documents", params={"after": doc["id"]}, headers=b)  # not even as a page cursor
    assert r.status_code == 400 and r.json()["error"]["param"] == "after"

    # A's document is untouched
    assert client.get(f"/v1/documents/{doc['id']}", headers=tenants["a_auth"]).json()["status"] == "ready"


def test_uploads_stay_inside_the_callers_prefix(client: TestClient, tenants: dict[str, Any]) -> None:
    b, a = tenants["b_auth"], tenants["a"]
    for escape in (f"../{a}/reactor/zorblax.md", f"/tenants/{a}/reactor/zorblax.md"):
        r = client.post("/v1/documents", json={"filename": escape}, headers=b)
        assert r.status_code == 400 and r.json()["error"]["param"] == "filename"
    # A path that merely looks like another prefix lands below the caller's own
    r = client.post("/v1/documents", json={"filename": f"tenants/{a}/reactor/zorblax.md"}, headers=b)
    assert r.status_code == 201 and r.json()["key"] == f"tenants/{tenants['b']}/tenants/{a}/reactor/zorblax.md"
    assert r.json()["document_id"] is None  # A's document of that path is not B's to replace


# --- chunks, through answers --------------------------------------------------------------------------
def test_a_rag_answer_never_cites_another_tenants_chunks(client: TestClient, tenants: dict[str, Any],
                                                        a_answer: dict[str, Any]) -> None:
    a_chunks = {c["chunk_id"] for c in a_answer["citations"]}
    a_doc = a_answer["citations"][0]["document_id"]

    r = client.post("/v1/chat/completions", headers=tenants["b_auth"],
                    json={"model": "rag/fast", "messages": [{"role": "user", "content": QUESTION}]})

    assert r.status_code == 200, r.text
    answer = r.json()
    assert "argon" not in answer["choices"][0]["message"]["content"].lower()
    assert not a_chunks & {c["chunk_id"] for c in answer["citations"]}
    assert a_doc not in {c["document_id"] for c in answer["citations"]}
    # Whatever B's cache holds (another test may have asked first), it is never A's answer.
    assert answer["choices"][0]["message"]["content"] != a_answer["choices"][0]["message"]["content"]


def test_a_streamed_rag_answer_never_cites_another_tenants_chunks(client: TestClient, tenants: dict[str, Any],
                                                                 a_answer: dict[str, Any]) -> None:
    chunks = _stream(client, tenants["b_auth"], {"model": "rag/fast", "messages": [{"role": "user",
                                                                                    "content": QUESTION}]})
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    (final,) = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert "argon" not in text.lower()
    assert not {c["chunk_id"] for c in a_answer["citations"]} & {c["chunk_id"] for c in final["citations"]}


def test_a_cached_answer_is_served_to_its_own_tenant_only(client: TestClient, tenants: dict[str, Any],
                                                          a_answer: dict[str, Any]) -> None:
    body = {"model": "rag/fast", "messages": [{"role": "user", "content": QUESTION}]}
    # A's second ask is a hit: the cache works, so B's miss below is isolation, not a cold cache
    again = client.post("/v1/chat/completions", headers=tenants["a_auth"], json=body).json()
    assert again["stratus"]["cache"] == "hit_exact"
    assert again["choices"][0]["message"]["content"] == a_answer["choices"][0]["message"]["content"]

    for _ in range(2):  # B's own repeat may hit B's own entry, which must still not be A's answer
        r = client.post("/v1/chat/completions", headers=tenants["b_auth"], json=body).json()
        assert "argon" not in r["choices"][0]["message"]["content"].lower()
        assert r["choices"][0]["message"]["content"] != a_answer["choices"][0]["message"]["content"]


# --- traces -------------------------------------------------------------------------------------------
def test_another_tenants_trace_is_not_found(client: TestClient, tenants: dict[str, Any], pg_url: str,
                                            a_answer: dict[str, Any]) -> None:
    request_id = a_answer["stratus"]["request_id"]
    assert _trace(pg_url, tenants["a"], request_id) is not None
    own = client.get(f"/v1/traces/{request_id}", headers=tenants["a_auth"])
    assert own.status_code == 200 and own.json()["model_alias"] == "fast"

    r = client.get(f"/v1/traces/{request_id}", headers=tenants["b_auth"])
    assert r.status_code == 404 and r.json()["error"]["param"] == "request_id"


def test_a_request_id_chosen_by_another_tenant_does_not_touch_the_first_ones_trace(
        client: TestClient, tenants: dict[str, Any], pg_url: str, a_answer: dict[str, Any]) -> None:
    # Given B reusing A's request id for its own request
    request_id = a_answer["stratus"]["request_id"]
    before = _trace(pg_url, tenants["a"], request_id)
    r = client.post("/v1/chat/completions", headers={**tenants["b_auth"], "x-request-id": request_id},
                    json={"model": "fast", "messages": [{"role": "user", "content": "Hello there"}]})
    assert r.status_code == 200 and r.headers["x-request-id"] == request_id

    # Then each tenant sees its own request under that id, and A's trace is unchanged
    b_trace = _trace(pg_url, tenants["b"], request_id)
    assert b_trace is not None and b_trace["tenant_id"] == tenants["b"]
    assert client.get(f"/v1/traces/{request_id}", headers=tenants["b_auth"]).json()["model_alias"] == "fast"
    assert _trace(pg_url, tenants["a"], request_id, wait=False) == before


# --- keys and administration --------------------------------------------------------------------------
def test_a_tenant_key_cannot_administer_or_revoke_another_tenants_key(client: TestClient,
                                                                    tenants: dict[str, Any]) -> None:
    a, b = tenants["a"], tenants["b_auth"]
    a_prefix = tenants["a_key"][len("sk-stratus-"):][:12]
    for method, path in (("DELETE", f"/v1/admin/tenants/{a}/keys/{a_prefix}"), ("GET", f"/v1/admin/tenants/{a}/keys"),
                         ("GET", "/v1/admin/tenants"), ("GET", f"/v1/admin/tenants/{a}/traces"),
                         ("GET", f"/v1/admin/tenants/{a}/usage")):
        r = client.request(method, path, headers=b)
        assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope", (method, path)
    # A's key still works
    assert client.get("/v1/documents", headers=tenants["a_auth"]).status_code == 200


def test_an_admin_of_one_tenant_acts_on_the_tenant_it_names_only(client: TestClient, tenants: dict[str, Any],
                                                                 pg_url: str) -> None:
    # An admin key may revoke A's key only by naming tenant A: under B's name the key is not found
    _, admin_key = tenant_with_key(pg_url, "iso-ops", scopes=["admin"])
    a_prefix = tenants["a_key"][len("sk-stratus-"):][:12]
    r = client.delete(f"/v1/admin/tenants/{tenants['b']}/keys/{a_prefix}", headers=auth(admin_key))
    assert r.status_code == 404
    assert client.get("/v1/documents", headers=tenants["a_auth"]).status_code == 200
    keys = client.get(f"/v1/admin/tenants/{tenants['b']}/keys", headers=auth(admin_key)).json()["data"]
    assert a_prefix not in {k["prefix"] for k in keys}
