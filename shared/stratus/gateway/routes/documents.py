"""/v1/documents: presigned uploads into the caller's prefix, listing, reading and deleting documents.

Scope "documents". The caller's tenant comes from its key, never from the request; another tenant's
document id answers 404 like an unknown one. The documents module (and with it psycopg and numpy) is
imported by the first documents request, not at cold start.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from stratus.gateway import errors
from stratus.gateway.auditing import AuditActor
from stratus.gateway.deps import Conn, require

router = APIRouter(prefix="/v1/documents", tags=["documents"],
                   responses=errors.responses(*errors.AUTHENTICATED, 404))
Caller = Annotated[Any, Depends(require("documents"))]
Status = Literal["pending", "ready", "failed", "deleted"]
# Any string: one that is not a document id answers 404 like an unknown id (ids reveal nothing).
DocumentId = Annotated[str, Path(max_length=256, description="the document's id (a UUID)")]


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Checked by the documents module (400 naming `filename`): relative, no '..', a supported extension.
    filename: str = Field(description="path below the tenant's prefix, e.g. guides/setup.md")
    content_type: str | None = Field(default=None, max_length=255)
    size_bytes: int | None = Field(default=None, ge=1, description="when given, the upload must be exactly this size")


class Upload(BaseModel):
    upload_url: str
    method: Literal["PUT"]
    headers: dict[str, str]
    key: str
    expires_in: int
    size_bytes: int | None
    document_id: str | None = Field(description="the document this upload replaces, if it exists")


class Document(BaseModel):
    id: str
    object: Literal["document"]
    key: str
    title: str | None
    status: Status
    version: int
    chunk_count: int
    size_bytes: int | None
    content_type: str | None
    error: str | None = Field(description="why the last ingestion attempt failed")
    created_at: int | None
    updated_at: int | None


class DocumentList(BaseModel):
    object: Literal["list"]
    data: list[Document]
    has_more: bool
    first_id: str | None
    last_id: str | None


class Deletion(BaseModel):
    id: str
    object: Literal["document.deleted"]
    deleted: bool
    status: Literal["deleting", "deleted"]


@router.post("", status_code=201, response_model=Upload)
def create_upload(body: UploadRequest, who: Caller, conn: Conn) -> dict[str, Any]:
    """A presigned PUT URL for tenants/<tenant>/<filename>; ingestion starts when the upload lands."""
    from stratus.gateway import documents

    return documents.presign_upload(conn, who.tenant_id, filename=body.filename, content_type=body.content_type,
                                    size_bytes=body.size_bytes)


@router.get("", response_model=DocumentList)
def list_documents(who: Caller, conn: Conn, status: Status | None = None,
                   # Declared, not enforced here: the documents module answers 400 naming `limit`.
                   limit: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": 100})] = 20,
                   after: Annotated[str | None, Query(max_length=256)] = None) -> dict[str, Any]:
    """One page in key order (limit 1 to 100); `after` is the previous page's last_id."""
    from stratus.gateway import documents

    return documents.list_documents(conn, who.tenant_id, status=status, limit=limit, after=after)


@router.get("/{document_id}", response_model=Document)
def get_document(document_id: DocumentId, who: Caller, conn: Conn) -> dict[str, Any]:
    from stratus.gateway import documents

    return documents.get_document(conn, who.tenant_id, document_id)


@router.delete("/{document_id}", status_code=202, response_model=Deletion)
def delete_document(document_id: DocumentId, who: Caller, conn: Conn, actor: AuditActor) -> dict[str, Any]:
    """Deletes the object; ingestion then removes the document's chunks (status "deleting")."""
    from stratus.gateway import documents
    from stratus.gateway.auditing import audited

    with audited(conn, actor, who.tenant_id, "document.delete", document_id) as change:
        change.before = documents.get_document(conn, who.tenant_id, document_id)
        change.after = documents.delete_document(conn, who.tenant_id, document_id)
        change.record = change.before["status"] != "deleted"  # deleting again changes nothing
    return dict(change.after)
