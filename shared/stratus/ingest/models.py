"""Types that flow through ingestion (the records it stores are stratus.db.records)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class IngestResult:
    """What one ingest attempt did. `status` is one of:

    ingested  - a new version was swapped in (`version`, `chunk_count`)
    unchanged - same content, settings and model as the active version; no embedding work was done
    failed    - a permanent problem with the document (`reason`); the previous version keeps serving
    skipped   - nothing to do: an out-of-order/superseded event, ...
    rejected  - an event the deployment did not configure (another bucket, a key outside tenants/<id>/)
    deleted   - the object is gone and so are the document's chunks
    """

    status: str
    tenant_id: str
    key: str
    version: int | None = None
    chunk_count: int = 0
    reason: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage (extract, chunk, embed, db)
