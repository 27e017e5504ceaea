"""/v1/documents through the app: a presigned upload lands in the tenant's prefix and is ingested by the
queue, the list shows status, version, chunk count and failure reasons, and DELETE removes the document
through the bucket's ObjectRemoved event."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stratus.config import load_settings
from stratus.db.records import SourceObject
from stratus.ingest.pipeline import ingest_document
from stratus_tools.local.stack import LocalStack
from tests.integration.gateway_support import auth, key_for, tenant_with_key

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / ".stratus" / "test-gateway-documents"
GUIDE = b"# Setup guide\n\nInstall the agent with the quartz installer.\n\n## Ports\n\nOpen port 7443 for the agent.\n"


@pytest.fixture(scope="module")
def stack(pg_url: str) -> Iterator[LocalStack]:
    with LocalStack(load_settings(data_dir=DATA_DIR)) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> Iterator[TestClient]:
    from stratus.gateway.app import create_app

    with TestClient(create_app()) as c:
        yield c


@pytest.fixture
def tenant(pg_url: str) -> tuple[str, dict[str, str]]:
    tenant_id, key = tenant_with_key(pg_url, "docs")
    return tenant_id, auth(key)


def _upload(client: TestClient, headers: dict[str, str], filename: str, data: bytes, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/documents", json={"filename": filename, **extra}, headers=headers)
    assert r.status_code == 201, r.text
    upload = r.json()
    put = urllib.request.Request(upload["upload_url"], data=data, method="PUT", headers=upload["headers"])
    with urllib.request.urlopen(put, timeout=30) as response:  # noqa: S310 - the local S3 endpoint
        assert response.status == 200
    return upload


def _only(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = client.get("/v1/documents", params=params, headers=headers)
    assert r.status_code == 200, r.text
    (doc,) = r.json()["data"]
    return doc


def _ingested(client: TestClient, stack: LocalStack, headers: dict[str, str], filename: str,
              data: bytes) -> dict[str, Any]:
    """Uploads a file into a tenant without documents; the document once its ingestion has run."""
    _upload(client, headers, filename, data)
    assert stack.wait_for_ingestion(timeout=120)
    return _only(client, headers)


def test_a_presigned_upload_is_ingested_and_listed(client: TestClient, stack: LocalStack,
                                                   tenant: tuple[str, dict[str, str]]) -> None:
    tenant_id, headers = tenant
    # Given a presigned upload for a path below the tenant's prefix
    upload = _upload(client, headers, "guides/setup.md", GUIDE, size_bytes=len(GUIDE))
    assert upload["key"] == f"tenants/{tenant_id}/guides/setup.md"
    assert upload["method"] == "PUT" and upload["expires_in"] == 900 and upload["document_id"] is None
    assert upload["upload_url"].startswith(stack.endpoint_url)  # moto locally; S3 itself on AWS
    assert "X-Amz-Signature=" in upload["upload_url"] and upload["headers"] == {"Content-Type": "text/markdown"}

    # When the queue has been drained
    assert stack.wait_for_ingestion(timeout=120)

    # Then the document is listed ready, with the key relative to the tenant's prefix
    doc = _only(client, headers)
    assert doc["key"] == "guides/setup.md" and doc["status"] == "ready" and doc["error"] is None
    assert doc["version"] == 1 and doc["chunk_count"] >= 1 and doc["title"] == "Setup guide"
    assert doc["size_bytes"] == len(GUIDE) and doc["content_type"] == "text/markdown"
    assert isinstance(doc["created_at"], int) and doc["updated_at"] >= doc["created_at"]
    assert client.get(f"/v1/documents/{doc['id']}", headers=headers).json() == doc

    # And uploading the same path again names the document it will replace; the new version follows
    again = _upload(client, headers, "guides/setup.md", GUIDE + b"\nPort 7444 is for metrics.\n")
    assert again["document_id"] == doc["id"]
    assert stack.wait_for_ingestion(timeout=120)
    assert _only(client, headers)["version"] == 2


def test_a_document_ingestion_refuses_shows_its_reason(client: TestClient, stack: LocalStack,
                                                       tenant: tuple[str, dict[str, str]]) -> None:
    _, headers = tenant
    doc = _ingested(client, stack, headers, "scans/broken.pdf", b"%PDF-1.4 this is not really a PDF")
    assert doc["status"] == "failed" and doc["version"] == 0 and doc["chunk_count"] == 0
    assert doc["error"].startswith("extraction_failed")
    assert _only(client, headers, status="failed")["id"] == doc["id"]
    assert client.get("/v1/documents", params={"status": "ready"}, headers=headers).json()["data"] == []


def test_delete_removes_the_object_and_ingestion_drops_the_chunks(client: TestClient, stack: LocalStack,
                                                                 tenant: tuple[str, dict[str, str]]) -> None:
    tenant_id, headers = tenant
    doc = _ingested(client, stack, headers, "old.txt", b"The legacy agent listens on port 6100.")

    # When the document is deleted through the API
    r = client.delete(f"/v1/documents/{doc['id']}", headers=headers)

    # Then the object is gone at once and the document follows when the removal event is handled
    assert r.status_code == 202 and r.json() == {"id": doc["id"], "object": "document.deleted", "deleted": True,
                                                 "status": "deleting"}
    listing = stack.client("s3").list_objects_v2(Bucket=stack.documents_bucket, Prefix=f"tenants/{tenant_id}/")
    assert listing.get("KeyCount", 0) == 0
    assert stack.wait_for_ingestion(timeout=120)
    gone = client.get(f"/v1/documents/{doc['id']}", headers=headers).json()
    assert gone["status"] == "deleted" and gone["chunk_count"] == 0
    # Tombstones are listed only when asked for; deleting again is harmless
    assert client.get("/v1/documents", headers=headers).json()["data"] == []
    assert _only(client, headers, status="deleted")["id"] == doc["id"]
    assert client.delete(f"/v1/documents/{doc['id']}", headers=headers).json()["status"] == "deleted"


def test_delete_of_a_document_whose_object_is_already_gone_removes_it_now(
        client: TestClient, tenant: tuple[str, dict[str, str]]) -> None:
    tenant_id, headers = tenant
    data = b"Ingested from the command line, never uploaded to the bucket."
    ingest_document(tenant_id, "cli/notes.txt", data, SourceObject(tenant_id, "cli/notes.txt", etag="e1",
                                                                   size=len(data)))
    doc = _only(client, headers)
    r = client.delete(f"/v1/documents/{doc['id']}", headers=headers)
    assert r.status_code == 202 and r.json()["status"] == "deleted"
    assert client.get(f"/v1/documents/{doc['id']}", headers=headers).json()["chunk_count"] == 0


def test_pages_follow_the_key_order(client: TestClient, tenant: tuple[str, dict[str, str]]) -> None:
    tenant_id, headers = tenant
    for name in ("c.txt", "a.txt", "b.txt"):
        ingest_document(tenant_id, name, f"Document {name} body text.".encode(),
                        SourceObject(tenant_id, name, etag=name, size=20))
    seen, after = [], None
    while True:
        page = client.get("/v1/documents", params={"limit": 2, **({"after": after} if after else {})},
                          headers=headers).json()
        seen += [d["key"] for d in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == ["a.txt", "b.txt", "c.txt"]
    r = client.get("/v1/documents", params={"after": str(uuid.uuid4())}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "after"
    for limit in (0, 101):
        r = client.get("/v1/documents", params={"limit": limit}, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["param"] == "limit"


@pytest.mark.parametrize("filename", [
    "../escape.md", "/etc/passwd.md", "a/../../b.md", "a//b.md", "./a.md", "dir/", "tab\there.md",
    "back\\slash.md", "binary.exe", "no-extension", "", " padded.md", "x" * 1020 + ".md",
])
def test_a_bad_filename_is_refused_naming_it(client: TestClient, tenant: tuple[str, dict[str, str]],
                                             filename: str) -> None:
    r = client.post("/v1/documents", json={"filename": filename}, headers=tenant[1])
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "filename" and r.json()["error"]["type"] == "invalid_request_error"


def test_size_type_and_shape_limits(client: TestClient, tenant: tuple[str, dict[str, str]]) -> None:
    headers = tenant[1]
    too_big = load_settings().max_document_bytes + 1
    r = client.post("/v1/documents", json={"filename": "big.pdf", "size_bytes": too_big}, headers=headers)
    assert r.status_code == 413 and r.json()["error"]["param"] == "size_bytes"
    r = client.post("/v1/documents", json={"filename": "a.md", "content_type": "not a type"}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "content_type"
    r = client.post("/v1/documents", json={"filename": "a.md", "bucket": "elsewhere"}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "bucket"
    r = client.post("/v1/documents", json={"filename": "a.md", "size_bytes": "many"}, headers=headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "size_bytes"


def test_unknown_or_malformed_ids_are_not_found(client: TestClient, tenant: tuple[str, dict[str, str]]) -> None:
    for doc_id in (str(uuid.uuid4()), "not-a-uuid", "1 OR 1=1"):
        for method in ("GET", "DELETE"):
            r = client.request(method, f"/v1/documents/{doc_id}", headers=tenant[1])
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (method, doc_id, r.text)


def test_the_documents_scope_is_required(client: TestClient, pg_url: str,
                                         tenant: tuple[str, dict[str, str]]) -> None:
    inference_only = key_for(pg_url, tenant[0], scopes=["inference"])
    r = client.get("/v1/documents", headers=auth(inference_only))
    assert r.status_code == 403 and r.json()["error"]["code"] == "insufficient_scope"
    assert client.get("/v1/documents").status_code == 401
