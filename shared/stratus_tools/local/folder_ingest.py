"""`stratus ingest`: upload a folder through S3 and report what ingestion made of each file.

Files take the production path (object under tenants/<tenant>/ -> S3 notification -> queue -> ingest
function); the outcome is read back from the documents table, so the report says what the pipeline
did, not what the uploader hoped. A document counts as processed once its row changes.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from stratus.errors import InvalidInput
from stratus.ingest.events import KEY_PREFIX
from stratus.ingest.extract import KINDS
from stratus.tenants import TENANT_ID

_CONTENT_TYPES = {"markdown": "text/markdown", "text": "text/plain", "html": "text/html", "pdf": "application/pdf"}


@dataclass(frozen=True)
class Upload:
    path: Path
    source_key: str  # below tenants/<tenant>/

    def object_key(self, tenant_id: str) -> str:
        return f"{KEY_PREFIX}{tenant_id}/{self.source_key}"


@dataclass
class IngestReport:
    tenant_id: str
    ingested: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)  # each with a "reason"

    def summary(self) -> str:
        return (f"tenant {self.tenant_id}: {len(self.ingested)} ingested, {len(self.unchanged)} unchanged,"
                f" {len(self.failed)} failed")

    def lines(self) -> list[str]:
        out = [self.summary()]
        out += [f"  ingested   {d['source_key']}  (version {d['version']}, {d['chunk_count']} chunks)"
                for d in self.ingested]
        out += [f"  unchanged  {d['source_key']}" for d in self.unchanged]
        out += [f"  failed     {d['source_key']}: {d['reason']}" for d in self.failed]
        return out


def plan(root: Path, tenant_id: str, prefix: str = "") -> tuple[list[Upload], list[dict[str, Any]]]:
    """The files to upload, and the ones refused up front (unsupported type) with a reason."""
    if not TENANT_ID.match(tenant_id):
        raise InvalidInput(f"--tenant {tenant_id!r} must match {TENANT_ID.pattern}", field="tenant")
    if not root.is_dir():
        raise InvalidInput(f"{root} is not a folder", field="path")
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise InvalidInput(f"--prefix {prefix!r} must be a relative path without '.' or '..'", field="prefix")
    uploads, refused = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden files and folders (.git, .DS_Store) are not documents
        source_key = str(PurePosixPath(prefix, *rel.parts)) if prefix else PurePosixPath(*rel.parts).as_posix()
        if path.suffix.lower() not in KINDS:
            refused.append({"source_key": source_key, "reason": f"unsupported file type {path.suffix or '(none)'!r}"
                            f" (supported: {', '.join(sorted(KINDS))}); not uploaded"})
        else:
            uploads.append(Upload(path, source_key))
    return uploads, refused


def upload(s3: Any, bucket: str, tenant_id: str, uploads: list[Upload]) -> None:
    for item in uploads:
        kind = KINDS[item.path.suffix.lower()]
        content_type = _CONTENT_TYPES.get(kind) or mimetypes.guess_type(item.path.name)[0]
        s3.upload_file(str(item.path), bucket, item.object_key(tenant_id),
                       ExtraArgs={"ContentType": content_type or "application/octet-stream"})


def snapshot(tenant_id: str, database_url: str | None = None) -> dict[str, dict[str, Any]]:
    """The tenant's documents by source key (status, version, chunk_count, error, updated_at)."""
    from stratus.db.connection import connect, tenant_transaction
    from stratus.db.documents import list_documents

    conn = connect(database_url)
    try:
        with tenant_transaction(tenant_id, conn):
            return {str(d["source_key"]): d for d in list_documents(conn, tenant_id)}
    finally:
        conn.close()


def _processed(before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    return after is not None and (before is None or after["updated_at"] != before["updated_at"])


def wait_for_documents(tenant_id: str, uploads: list[Upload], before: dict[str, dict[str, Any]], *,
                       timeout: float, idle: Callable[[], bool] | None = None,
                       progress: Callable[[int], None] | None = None, database_url: str | None = None,
                       poll_s: float = 0.5) -> dict[str, dict[str, Any]]:
    """Poll the documents table until every upload was processed, the queue is idle, or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        drained = idle() if idle is not None else False  # checked first: a later snapshot sees its work
        after = snapshot(tenant_id, database_url)
        done = sum(_processed(before.get(u.source_key), after.get(u.source_key)) for u in uploads)
        if progress is not None:
            progress(done)
        if done == len(uploads) or drained or time.monotonic() >= deadline:
            return after
        time.sleep(poll_s)


def classify(tenant_id: str, uploads: list[Upload], refused: list[dict[str, Any]],
             before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> IngestReport:
    report = IngestReport(tenant_id, failed=list(refused))
    for u in uploads:
        old, new = before.get(u.source_key), after.get(u.source_key)
        if not _processed(old, new):
            report.failed.append({"source_key": u.source_key, "reason": "not processed in time (still queued,"
                                  " or it ended in the ingest dead-letter queue)"})
        elif new["error"] or new["status"] != "ready":  # type: ignore[index]
            report.failed.append({"source_key": u.source_key,
                                  "reason": new["error"] or f"status {new['status']}"})  # type: ignore[index]
        elif old is not None and old["version"] == new["version"]:  # type: ignore[index]
            report.unchanged.append(new)  # type: ignore[arg-type]
        else:
            report.ingested.append(new)  # type: ignore[arg-type]
    report.failed.sort(key=lambda d: d["source_key"])
    return report
