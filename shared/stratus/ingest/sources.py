"""The S3 path: an object event -> the object's CURRENT state -> the pipeline.

Events say that something changed, not what the object now is: content always comes from a fresh
GET, and a HEAD under the document lock confirms it is still current before a write. So duplicate,
delayed and reordered events converge on the bucket's state and never roll a document back.

Nothing in an event is trusted that the deployment did not configure: the bucket must be the documents
bucket (STRATUS_DOCUMENTS_BUCKET) and the key must be under `tenants/<valid tenant id>/`, or the event is
rejected (a warning and the `Documents_rejected` metric, and the message succeeds: retrying cannot make it
valid, so it never reaches the DLQ). Size, etag and version come from S3's HEAD/GET, never from the event.
With tracing on each event is a `document` span (the object's GET is `download` in it).
"""

from __future__ import annotations

import logging

from stratus.aws import s3
from stratus.config import Settings, get_settings
from stratus.db.records import SourceObject
from stratus.errors import InvalidInput, NotFound, TooLarge
from stratus.ingest.events import DocumentKey, ObjectEvent, split_key
from stratus.ingest.models import IngestResult
from stratus.spans import span

log = logging.getLogger(__name__)


def handle_object_event(event: ObjectEvent) -> IngestResult:
    """Apply one S3 object event. Raises TransientError when S3 or the database is unavailable."""
    refused = foreign_bucket(event.bucket, get_settings())
    if refused is not None:
        return _rejected(event, refused)
    try:
        doc = split_key(event.key)
    except InvalidInput as err:
        # Retrying cannot fix a key outside tenants/<tenant_id>/: log it and let the message succeed.
        return _rejected(event, err.message)
    with span("document", kind=event.kind, tenant_id=doc.tenant_id) as step:
        result = _removed(event, doc) if event.kind == "removed" else _created(event, doc)
        step.annotate(status=result.status, version=result.version)
    return result


def foreign_bucket(bucket: str, settings: Settings) -> str | None:
    """Why an event from `bucket` must not be acted on, or None if it is the documents bucket.

    Without the check, an ObjectCreated event naming another bucket and a live document's key reads as
    "the object is gone" (the GET there finds nothing) and deletes the document. With no documents bucket
    configured, nothing is acted on.
    """
    expected = settings.documents_bucket
    if expected is None:
        return "no documents bucket is configured (STRATUS_DOCUMENTS_BUCKET)"
    if bucket != expected:
        return f"bucket {bucket!r} is not the documents bucket {expected!r}"
    return None


def _rejected(event: ObjectEvent, reason: str) -> IngestResult:
    # Status "rejected": the handler counts it as the Documents_rejected metric; the message succeeds.
    log.warning("rejected %s s3://%s/%s: %s", event.event_name, event.bucket, event.key, reason,
                extra={"status": "rejected", "bucket": event.bucket, "key": event.key, "reason": reason})
    return IngestResult("rejected", "", event.key, reason=reason)


def _source(doc: DocumentKey, head: s3.ObjectHead, event: ObjectEvent) -> SourceObject:
    # Everything but the sequencer is S3's answer; the event's sequencer describes the version it names,
    # so it is kept only when that version is the one S3 returned.
    same = event.etag is not None and head.etag is not None and event.etag.strip('"') == head.etag.strip('"')
    return SourceObject(
        tenant_id=doc.tenant_id, key=doc.path, etag=head.etag, version_id=head.version_id,
        last_modified=head.last_modified, size=head.size, content_type=head.content_type,
        sequencer=event.sequencer if same else None,
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
