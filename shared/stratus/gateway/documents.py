"""Documents through the API: presigned uploads into the tenant's prefix, listing, deletion.

The API writes to S3 like any other writer and ingestion follows the bucket's notifications, so a file
uploaded through a presigned URL and one copied in with `aws s3 cp` take the same path. Every read runs
in the caller's tenant transaction: another tenant's document id is simply not found (404, never 403,
so ids do not reveal that a document exists).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from stratus.aws import s3
from stratus.config import ConfigError, Settings, get_settings
from stratus.db import documents as repo
from stratus.db.connection import tenant_transaction
from stratus.errors import InvalidInput, NotFound, TooLarge
from stratus.ingest.events import KEY_PREFIX
from stratus.ingest.extract import KINDS

if TYPE_CHECKING:
    import psycopg

UPLOAD_EXPIRES_S = 900
MAX_KEY_BYTES = 1024  # S3's limit for a whole object key
STATUSES = ("pending", "ready", "failed", "deleted")
LISTED_BY_DEFAULT = ("pending", "ready", "failed")  # tombstones only when asked for
MAX_PAGE = 100
# The type an upload is signed with when the caller names none: the one ingestion reads it as.
_TYPE_OF_KIND = {"text": "text/plain", "markdown": "text/markdown", "html": "text/html", "pdf": "application/pdf"}
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[\w.+-]+(\s*;\s*[\w.+-]+=[\w.+\"-]+)*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def tenant_prefix(tenant_id: str) -> str:
    return f"{KEY_PREFIX}{tenant_id}/"


def check_filename(filename: str) -> str:
    """A document path below the tenant's prefix, or InvalidInput naming `filename`."""
    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"filename {filename!r} {why}", field="filename")

    if not filename:
        raise bad("is empty")
    if _CONTROL.search(filename):
        raise bad("contains control characters")
    if filename.startswith("/") or "\\" in filename:
        raise bad("must be a relative path with '/' separators")
    parts = filename.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise bad("has an empty, '.' or '..' path segment")
    if filename != filename.strip() or any(p != p.strip() for p in parts):
        raise bad("has leading or trailing spaces in a path segment")
    if PurePosixPath(filename).suffix.lower() not in KINDS:
        raise bad(f"has an unsupported extension (supported: {', '.join(sorted(KINDS))})")
    return filename


def presign_upload(conn: psycopg.Connection, tenant_id: str, *, filename: str, content_type: str | None = None,
                   size_bytes: int | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """A presigned PUT for `tenants/<tenant>/<filename>`; the id of the document it will replace, if any."""
    settings = settings or get_settings()
    check_filename(filename)
    key = tenant_prefix(tenant_id) + filename
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidInput(f"filename is too long: the object key would be over {MAX_KEY_BYTES} bytes",
                           field="filename")
    if content_type is not None:
        if len(content_type) > 255 or not _CONTENT_TYPE.match(content_type):
            raise InvalidInput(f"content_type {content_type!r} is not a media type", field="content_type")
    kind = KINDS[PurePosixPath(filename).suffix.lower()]  # ingestion, too, goes by the extension first
    if size_bytes is not None and size_bytes > settings.max_document_bytes:
        raise TooLarge(f"size_bytes {size_bytes} is over the document limit of {settings.max_document_bytes} bytes",
                       field="size_bytes")
    bucket = _bucket(settings)
    with tenant_transaction(tenant_id, conn):
        existing = repo.get_document(conn, tenant_id, filename)
    upload = s3.presign_put(bucket, key, content_type=content_type or _TYPE_OF_KIND[kind],
                            size_bytes=size_bytes, expires_in=UPLOAD_EXPIRES_S)
    return {"upload_url": upload.url, "method": upload.method, "headers": upload.headers, "key": key,
            "expires_in": upload.expires_in, "size_bytes": size_bytes,
            "document_id": existing.id if existing else None}


def list_documents(conn: psycopg.Connection, tenant_id: str, *, status: str | None = None, limit: int = 20,
                   after: str | None = None) -> dict[str, Any]:
    """One page in key order; `after` is the id of the last document of the previous page."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    with tenant_transaction(tenant_id, conn):
        after_key = None
        if after is not None:
            cursor = _find(conn, tenant_id, after)
            if cursor is None:
                raise InvalidInput(f"after: no document {after!r}", field="after")
            after_key = str(cursor["source_key"])
        rows = repo.page_documents(conn, tenant_id, statuses=[status] if status else LISTED_BY_DEFAULT,
                                   limit=limit + 1, after_key=after_key)
    data = [_shown(r) for r in rows[:limit]]
    return {"object": "list", "data": data, "has_more": len(rows) > limit,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


def get_document(conn: psycopg.Connection, tenant_id: str, document_id: str) -> dict[str, Any]:
    with tenant_transaction(tenant_id, conn):
        row = _find(conn, tenant_id, document_id)
    if row is None:
        raise _not_found(document_id)
    return _shown(row)


def delete_document(conn: psycopg.Connection, tenant_id: str, document_id: str, *,
                    settings: Settings | None = None) -> dict[str, Any]:
    """Delete the document's object; ingestion drops its chunks when the ObjectRemoved event arrives.

    If the object is already gone (its removal event lost, or the document was ingested without S3),
    the chunks are removed here, so a DELETE never leaves a document answering questions.
    """
    settings = settings or get_settings()
    with tenant_transaction(tenant_id, conn):
        row = _find(conn, tenant_id, document_id)
    if row is None:
        raise _not_found(document_id)
    if row["status"] == "deleted":
        return {"id": str(row["id"]), "object": "document.deleted", "deleted": True, "status": "deleted"}
    bucket, key = _bucket(settings), tenant_prefix(tenant_id) + str(row["source_key"])
    try:
        s3.head_object(bucket, key)
    except NotFound:
        _remove_now(conn, tenant_id, str(row["source_key"]), bucket, key)
        return {"id": str(row["id"]), "object": "document.deleted", "deleted": True, "status": "deleted"}
    s3.delete_object(bucket, key)
    return {"id": str(row["id"]), "object": "document.deleted", "deleted": True, "status": "deleting"}


def _remove_now(conn: psycopg.Connection, tenant_id: str, path: str, bucket: str, key: str) -> None:
    from stratus.ingest.pipeline import remove_document  # numpy and the embedder load only on this path

    def still_absent() -> bool:
        try:
            s3.head_object(bucket, key)
        except NotFound:
            return True
        return False  # re-uploaded meanwhile: its created event wins

    remove_document(tenant_id, path, confirm=still_absent, conn=conn)


def _bucket(settings: Settings) -> str:
    if not settings.documents_bucket:  # settings refuse this outside local mode; locally the stack sets it
        raise ConfigError("STRATUS_DOCUMENTS_BUCKET is not set: the documents API needs the bucket")
    return settings.documents_bucket


def _find(conn: psycopg.Connection, tenant_id: str, document_id: str) -> dict[str, Any] | None:
    try:
        canonical = str(uuid.UUID(document_id))
    except ValueError:
        return None  # not an id at all: the same answer as an unknown one
    return repo.document_by_id(conn, tenant_id, canonical)


def _not_found(document_id: str) -> NotFound:
    return NotFound(f"no document {document_id!r}", field="id")


def _epoch(value: object) -> int | None:
    return int(value.timestamp()) if isinstance(value, datetime) else None


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "object": "document", "key": row["source_key"], "title": row["title"],
        "status": row["status"], "version": row["version"], "chunk_count": row["chunk_count"],
        "size_bytes": row["size_bytes"], "content_type": row["content_type"], "error": row["error"],
        "created_at": _epoch(row["created_at"]), "updated_at": _epoch(row["updated_at"]),
    }
