"""The S3 path: an object event -> the object's CURRENT state -> the pipeline.

Events say that something changed, not what the object now is: content always comes from a fresh
GET, and a HEAD under the document lock confirms it is still current before a write. So duplicate,
delayed and reordered events converge on the bucket's state and never roll a document back.
In a traced Lambda each event is a `## document` subsegment (the object's GET is `## download` in it).
"""

from __future__ import annotations

import logging

from stratus.aws import s3
from stratus.config import get_settings
from stratus.db.records import SourceObject
from stratus.errors import InvalidInput, NotFound, TooLarge
from stratus.ingest.events import DocumentKey, ObjectEvent, split_key
from stratus.ingest.models import IngestResult
from stratus.spans import span

log = logging.getLogger(__name__)


def handle_object_event(event: ObjectEvent) -> IngestResult:
    """Apply one S3 object event. Raises TransientError when S3 or the database is unavailable."""
    try:
        doc = split_key(event.key)
    except InvalidInput as err:
        # Retrying cannot fix a key outside tenants/<tenant_id>/: log it and let the message succeed.
        log.warning("skipping s3://%s/%s: %s", event.bucket, event.key, err.message)
        return IngestResult("skipped", "", event.key, reason=err.message)
    with span("document", kind=event.kind, tenant_id=doc.tenant_id) as step:
        result = _removed(event, doc) if event.kind == "removed" else _created(event, doc)
        step.annotate(status=result.status, version=result.version)
    return result


def _source(doc: DocumentKey, head: s3.ObjectHead, event: ObjectEvent) -> SourceObject:
    return SourceObject(
        tenant_id=doc.tenant_id, key=doc.path, etag=head.etag, version_id=head.version_id,
        last_modified=head.last_modified, size=head.size, content_type=head.content_type,
        sequencer=event.sequencer,
    )


def _created(event: ObjectEvent, doc: DocumentKey) -> IngestResult:
    from stratus.ingest import pipeline  # numpy, psycopg and the repository load with the first event

    settings = get_settings()
    try:
        with span("download"):
            obj = s3.get_object(event.bucket, event.key, max_bytes=settings.max_document_bytes)
    except NotFound:
        return _removed(event, doc)  # deleted since the event was sent: its removal event may be behind
    except TooLarge as err:
        try:
            head = s3.head_object(event.bucket, event.key)
        except NotFound:
            return _removed(event, doc)
        return pipeline.record_document_failure(
            doc.tenant_id, doc.path, _source(doc, head, event), err,
            confirm=lambda: _current_etag(event) == head.etag,
        )
    return pipeline.ingest_document(
        doc.tenant_id, doc.path, obj.data, _source(doc, obj.head, event),
        confirm=lambda: _current_etag(event) == obj.head.etag,
    )


def _removed(event: ObjectEvent, doc: DocumentKey) -> IngestResult:
    from stratus.ingest import pipeline

    # HTTP dates (LastModified) have whole seconds; compare the removal at the same resolution.
    removed_at = event.event_time.replace(microsecond=0) if event.event_time else None
    return pipeline.remove_document(
        doc.tenant_id, doc.path, removed_at=removed_at, confirm=lambda: _current_etag(event) is None
    )


def _current_etag(event: ObjectEvent) -> str | None:
    """The object's etag now, or None if it does not exist."""
    try:
        return s3.head_object(event.bucket, event.key).etag
    except NotFound:
        return None
