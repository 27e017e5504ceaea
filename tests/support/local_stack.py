"""The in-process local stack integration tests run against, and documents ingested straight into it (no
upload, no S3 event, no poller: the test decides when ingestion happens)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

from stratus.config import load_settings
from stratus.db.records import SourceObject
from stratus.ingest.pipeline import ingest_document
from stratus_tools.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]


def running_stack(name: str) -> Iterator[LocalStack]:
    """For a fixture to `yield from`: a LocalStack with its data in .stratus/<name>, pollers off."""
    with LocalStack(load_settings(data_dir=ROOT / ".stratus" / name), start_pollers=False) as running:
        yield running


def ingest_bytes(tenant_id: str, key: str, data: bytes) -> None:
    """Ingests `data` as the tenant's object `key` (a fresh etag each time: a new version)."""
    ingest_document(tenant_id, key, data, SourceObject(tenant_id=tenant_id, key=key, etag=uuid.uuid4().hex,
                                                       size=len(data)))
