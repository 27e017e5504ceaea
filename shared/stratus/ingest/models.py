"""Types that flow through ingestion."""

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


@dataclass(frozen=True)
class IngestResult:
    """What one ingest attempt did. `status` is one of:

    ingested  - a new version was swapped in (`version`, `chunk_count`)
    unchanged - same content, settings and model as the active version; no embedding work was done
    failed    - a permanent problem with the document (`reason`); the previous version keeps serving
    skipped   - nothing to do: an out-of-order/superseded event, a key outside tenants/<id>/, ...
    deleted   - the object is gone and so are the document's chunks
    """

    status: str
    tenant_id: str
    key: str
    version: int | None = None
    chunk_count: int = 0
    reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (extract, chunk, embed, db)
