"""Ingestion acts only on events the deployment configured: the documents bucket, keys under
tenants/<valid id>/. Anything else is dropped (a warning, the Documents_rejected count), never acted on and
never failed back to the queue (retrying cannot make it valid)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from stratus.aws.clients import client, reset_clients
from stratus.config import load_settings, reset_settings
from stratus.db import documents
from stratus.db.connection import get_connection, tenant_transaction
from stratus.ingest.consumer import process_sqs_batch
from stratus.ingest.sources import foreign_bucket

BUCKET = "stratus-docs-configured"
OTHER = "someone-elses-bucket"


def sqs_event(*records: tuple[str, str, str], size: int = 1) -> dict[str, Any]:
    """One SQS message per (event name, bucket, key)."""
    out = []
    for i, (name, bucket, key) in enumerate(records):
        body = {"Records": [{"eventName": name, "eventTime": "2030-01-01T00:00:00Z",
                             "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": size}}}]}
        out.append({"messageId": f"m{i}", "receiptHandle": "r", "body": json.dumps(body), "attributes": {},
                    "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"})
    return {"Records": out}


@pytest.fixture
def s3(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("STRATUS_DOCUMENTS_BUCKET", BUCKET)
    reset_settings()
    with mock_aws():
        reset_clients()
        s3 = client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket=OTHER)
        yield s3
    reset_clients()
    monkeypatch.delenv("STRATUS_DOCUMENTS_BUCKET")
    reset_settings()


def status(tenant: str, path: str) -> str | None:
    conn = get_connection()
    with tenant_transaction(tenant, conn):
        doc = documents.get_document(conn, tenant, path)
    return None if doc is None else doc.status


def test_an_event_naming_another_bucket_never_touches_a_live_document(s3, tenant_id, caplog) -> None:
    key = f"tenants/{tenant_id}/policy.md"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"# Policy\n\nKeep receipts.\n")
    response, outcomes = process_sqs_batch(sqs_event(("ObjectCreated:Put", BUCKET, key)))
    assert response == {"batchItemFailures": []} and outcomes["ingested"] == 1
    assert status(tenant_id, "policy.md") == "ready"

    # The same key in another bucket (absent there): created, removed and a lifecycle expiry.
    caplog.set_level(logging.WARNING, logger="stratus.ingest.sources")
    forged = sqs_event(("ObjectCreated:Put", OTHER, key), ("ObjectRemoved:Delete", OTHER, key),
                       ("LifecycleExpiration:Delete", OTHER, key))
    response, outcomes = process_sqs_batch(forged)
    assert response == {"batchItemFailures": []}  # not retried, never in the DLQ
    assert outcomes["rejected"] == 3 and outcomes["deleted"] == 0
    assert status(tenant_id, "policy.md") == "ready"
    assert sum("not the documents bucket" in r.getMessage() for r in caplog.records) == 3


def test_keys_outside_a_valid_tenant_prefix_are_rejected(s3, tenant_id) -> None:
    for key in ("uploads/x.md", "tenants/Bad Tenant/x.md", f"tenants/{tenant_id}/", "tenants/../x.md"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"text")
    keys = ("uploads%2Fx.md", "tenants%2FBad+Tenant%2Fx.md", f"tenants%2F{tenant_id}%2F", "tenants%2F..%2Fx.md")
    response, outcomes = process_sqs_batch(sqs_event(*(("ObjectCreated:Put", BUCKET, k) for k in keys)))
    assert response == {"batchItemFailures": []}
    assert outcomes["rejected"] == 4


def test_size_and_version_come_from_s3_not_the_event(s3, tenant_id) -> None:
    key = f"tenants/{tenant_id}/big.md"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"Small and fine.")
    # The event claims an enormous object; S3 says it is small: it is ingested as what S3 holds.
    response, outcomes = process_sqs_batch(sqs_event(("ObjectCreated:Put", BUCKET, key), size=10**12))
    assert outcomes["ingested"] == 1, outcomes
    conn = get_connection()
    with tenant_transaction(tenant_id, conn):
        size = conn.execute("SELECT size_bytes FROM documents WHERE tenant_id = %s AND source_key = %s",
                            [tenant_id, "big.md"]).fetchone()
    assert size is not None and size[0] == len(b"Small and fine.")


def test_the_bucket_check_itself() -> None:
    configured = load_settings(env="prod", documents_bucket=BUCKET, database_url="postgresql://x/y")
    assert foreign_bucket(BUCKET, configured) is None
    assert "not the documents bucket" in (foreign_bucket(OTHER, configured) or "")
    # With no bucket configured, nothing is acted on (local mode included).
    assert "no documents bucket" in (foreign_bucket(BUCKET, load_settings(env="local", documents_bucket=None)) or "")
