"""The ingest Lambda handler with moto S3 and the events in events/: partial batch failures and ordering."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote_plus

import pytest
from moto import mock_aws

from stratus.aws.clients import client, reset_clients
from stratus.config import reset_settings
from stratus.db import documents
from stratus.db.connection import tenant_transaction
from stratus.errors import TransientError
from tests.conftest import load_function_app

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "stratus-documents-local"  # the bucket named in events/ingest_*.json
SAMPLE_KEY = "tenants%2Facme%2Fhandbook%2Fgetting+started.md"
POISON_ID = "0f6f2f64-6f5d-4a8b-9e44-2f1b1f0c0005"


def load_event(name: str, tenant: str, path: str = "handbook/getting started.md") -> dict[str, Any]:
    """A sample event, re-pointed at this test's tenant (keys URL-encoded as S3 does)."""
    text = (ROOT / "events" / name).read_text()
    return json.loads(text.replace(SAMPLE_KEY, quote_plus(f"tenants/{tenant}/{path}", safe="")))


@pytest.fixture(scope="module")
def app(pg_url: str) -> Any:
    return load_function_app("ingest")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("STRATUS_DOCUMENTS_BUCKET", BUCKET)  # ingestion acts only on the configured bucket
    reset_settings()
    with mock_aws():
        reset_clients()
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield s3
    reset_clients()
    monkeypatch.undo()
    reset_settings()


@pytest.fixture
def context() -> SimpleNamespace:
    return SimpleNamespace(function_name="ingest", memory_limit_in_mb=1024, aws_request_id="req-1",
                           invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ingest")


def state(tenant: str, path: str = "handbook/getting started.md") -> tuple[str, int, list[str]] | None:
    from stratus.db.connection import get_connection

    conn = get_connection()
    with tenant_transaction(tenant, conn):
        doc = documents.get_document(conn, tenant, path)
        if doc is None:
            return None
        rows = conn.execute("SELECT text FROM chunks WHERE document_id = %s ORDER BY ordinal", [doc.id])
        return doc.status, doc.version, [r[0] for r in rows]


def put(s3: Any, tenant: str, body: bytes, path: str = "handbook/getting started.md") -> None:
    s3.put_object(Bucket=BUCKET, Key=f"tenants/{tenant}/{path}", Body=body)


def test_put_then_delete(app, s3, context, tenant_id) -> None:
    put(s3, tenant_id, b"# Handbook\n\nWelcome aboard.\n")
    assert app.handler(load_event("ingest_put.json", tenant_id), context) == {"batchItemFailures": []}
    assert state(tenant_id) == ("ready", 1, ["Welcome aboard."])

    # A duplicate delivery of the same event changes nothing
    assert app.handler(load_event("ingest_put.json", tenant_id), context) == {"batchItemFailures": []}
    assert state(tenant_id) == ("ready", 1, ["Welcome aboard."])

    s3.delete_object(Bucket=BUCKET, Key=f"tenants/{tenant_id}/handbook/getting started.md")
    assert app.handler(load_event("ingest_delete.json", tenant_id), context) == {"batchItemFailures": []}
    assert state(tenant_id) == ("deleted", 1, [])


def test_poison_message_fails_alone(app, s3, context, tenant_id) -> None:
    put(s3, tenant_id, b"# Handbook\n\nWelcome aboard.\n")
    response = app.handler(load_event("ingest_batch_with_poison.json", tenant_id), context)
    assert response == {"batchItemFailures": [{"itemIdentifier": POISON_ID}]}
    assert state(tenant_id) == ("ready", 1, ["Welcome aboard."])


def test_test_event_is_ignored(app, s3, context, tenant_id) -> None:
    assert app.handler(load_event("ingest_test_event.json", tenant_id), context) == {"batchItemFailures": []}


def test_events_always_apply_the_objects_current_state(app, s3, context, tenant_id) -> None:
    # Two uploads, whose events arrive newest first: the late older event must not roll back
    put(s3, tenant_id, b"Version one.")
    put(s3, tenant_id, b"Version two.")
    event = load_event("ingest_put.json", tenant_id)
    assert app.handler(event, context) == {"batchItemFailures": []}
    assert app.handler(event, context) == {"batchItemFailures": []}
    assert state(tenant_id) == ("ready", 1, ["Version two."])

    # A create event whose object is already gone behaves as the removal
    s3.delete_object(Bucket=BUCKET, Key=f"tenants/{tenant_id}/handbook/getting started.md")
    assert app.handler(event, context) == {"batchItemFailures": []}
    assert state(tenant_id) == ("deleted", 1, [])

    # A removal event for an object that exists again (re-created since) is ignored
    put(s3, tenant_id, b"Version three.")
    app.handler(event, context)
    assert app.handler(load_event("ingest_delete.json", tenant_id), context) == {"batchItemFailures": []}
    assert state(tenant_id) == ("ready", 2, ["Version three."])


def test_bad_documents_and_keys_are_recorded_or_skipped_not_retried(app, s3, context, tenant_id) -> None:
    put(s3, tenant_id, b"%PDF-1.4 broken", path="scan.pdf")
    s3.put_object(Bucket=BUCKET, Key="uploads/orphan.md", Body=b"# no tenant")
    batch = load_event("ingest_put.json", tenant_id, path="scan.pdf")
    other = load_event("ingest_put.json", tenant_id)
    other["Records"][0]["body"] = other["Records"][0]["body"].replace(
        quote_plus(f"tenants/{tenant_id}/handbook/getting started.md", safe=""), "uploads%2Forphan.md")
    other["Records"][0]["messageId"] = "orphan"
    batch["Records"].append(other["Records"][0])
    assert app.handler(batch, context) == {"batchItemFailures": []}
    status, version, _ = state(tenant_id, "scan.pdf") or ("", 0, [])
    assert (status, version) == ("failed", 0)


def test_transient_errors_fail_only_their_message(app, s3, context, tenant_id, monkeypatch) -> None:
    from stratus.aws import s3 as s3_adapter

    put(s3, tenant_id, b"Fine.", path="ok.md")
    real_get = s3_adapter.get_object

    def flaky(bucket: str, key: str, **kw: Any) -> Any:
        if key.endswith("down.md"):
            raise TransientError("S3 error SlowDown")
        return real_get(bucket, key, **kw)

    monkeypatch.setattr(s3_adapter, "get_object", flaky)
    batch = load_event("ingest_put.json", tenant_id, path="ok.md")
    down = load_event("ingest_put.json", tenant_id, path="down.md")["Records"][0]
    down["messageId"] = "down"
    batch["Records"].append(down)
    assert app.handler(batch, context) == {"batchItemFailures": [{"itemIdentifier": "down"}]}
    assert state(tenant_id, "ok.md") == ("ready", 1, ["Fine."])


def test_s3_adapter_translates_errors(s3) -> None:
    from stratus.aws import s3 as s3_adapter
    from stratus.errors import NotFound, TooLarge

    s3.put_object(Bucket=BUCKET, Key="tenants/a/x.md", Body=b"x" * 100, ContentType="text/markdown")
    head = s3_adapter.head_object(BUCKET, "tenants/a/x.md")
    assert (head.size, head.content_type) == (100, "text/markdown") and head.etag and '"' not in head.etag
    with pytest.raises(NotFound):
        s3_adapter.head_object(BUCKET, "tenants/a/missing.md")
    with pytest.raises(NotFound):
        s3_adapter.get_object(BUCKET, "tenants/a/missing.md")
    with pytest.raises(TooLarge):
        s3_adapter.get_object(BUCKET, "tenants/a/x.md", max_bytes=10)
    assert s3_adapter.get_object(BUCKET, "tenants/a/x.md").data == b"x" * 100


def test_too_large_objects_are_recorded_without_downloading(app, s3, context, tenant_id, monkeypatch) -> None:
    from stratus.config import load_settings
    from stratus.ingest import sources

    monkeypatch.setattr(sources, "get_settings", lambda: load_settings(max_document_bytes=1024))
    put(s3, tenant_id, b"word " * 1000, path="huge.txt")
    assert app.handler(load_event("ingest_put.json", tenant_id, path="huge.txt"), context) == {
        "batchItemFailures": []}
    from stratus.db.connection import get_connection

    conn = get_connection()
    with tenant_transaction(tenant_id, conn):
        doc = documents.get_document(conn, tenant_id, "huge.txt")
    assert doc is not None and doc.status == "failed" and (doc.error or "").startswith("too_large:")
