"""The document store's records as plain types: the S3 object a document comes from, a chunk to store,
and a document row as the ingest path reads it. db.documents writes and reads them; ingest builds them.
They live here, below both, so the database layer never imports ingestion."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class SourceObject:
    """An S3 object as fetched: where it lives and which version of it we hold."""

    tenant_id: str
    key: str  # path below tenants/<tenant_id>/
    etag: str | None = None
    version_id: str | None = None
    last_modified: datetime | None = None
    size: int | None = None
    content_type: str | None = None
    sequencer: str | None = None


@dataclass(frozen=True)
class ChunkDraft:
    ordinal: int
    text: str
    token_count: int
    title: str | None = None
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None
    metadata: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentState:
    """A document row as the ingest path needs it."""

    id: str
    tenant_id: str
    source_key: str
    status: str
    version: int
    content_hash: str | None
    etag: str | None
    source_modified_at: datetime | None
    chunk_count: int
    error: str | None
