"""A document deleted through the API is an audit row of its tenant (who, the document before, its state
after); deleting it again changes nothing and records nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from stratus import audit
from stratus.config import load_settings
from stratus.db.records import SourceObject
from stratus.ingest.pipeline import ingest_document
from stratus_tools.local.stack import LocalStack
from tests.integration.gateway_support import auth, tenant_with_key

DATA_DIR = Path(__file__).resolve().parents[2] / ".stratus" / "test-audit-documents"


@pytest.fixture(scope="module")
def client(pg_url: str) -> Iterator[TestClient]:
    from stratus.gateway.app import create_app

    with LocalStack(load_settings(data_dir=DATA_DIR)), TestClient(create_app()) as c:
        yield c


def test_a_document_delete_is_recorded_once(client: TestClient, pg_url: str) -> None:
    tenant, key = tenant_with_key(pg_url, "auddoc")
    headers = {**auth(key), "x-request-id": "delete-notes-1"}
    data = b"Ingested from the command line, never uploaded to the bucket."
    ingest_document(tenant, "cli/notes.txt", data, SourceObject(tenant, "cli/notes.txt", etag="e1", size=len(data)))
    (doc,) = client.get("/v1/documents", headers=headers).json()["data"]

    assert client.delete(f"/v1/documents/{doc['id']}", headers=headers).json()["status"] == "deleted"
    assert client.delete(f"/v1/documents/{doc['id']}", headers=headers).json()["status"] == "deleted"

    with psycopg.connect(pg_url) as owner:
        (row,) = audit.stored_rows(owner, tenant)
    assert row["action"] == "document.delete" and row["target"] == doc["id"]
    assert row["actor_scopes"] == ["documents", "inference"] and row["request_id"] == "delete-notes-1"
    assert row["before"]["key"] == "cli/notes.txt" and row["before"]["status"] == "ready"
    assert row["after"] == {"id": doc["id"], "object": "document.deleted", "deleted": True, "status": "deleted"}
