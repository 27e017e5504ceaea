"""The SQS consumer: S3 notifications in message bodies, partial batch failures; a re-embedding's messages
(stratus.reindex.queue) share the queue.

A message fails (returns to the queue, then the DLQ) only when it is malformed or a dependency is
unavailable; a bad document is recorded on its row and its message succeeds.

Each message is a `message` span. A sender that traces puts its W3C context in the message's attributes
(`traceparent`, `tracestate`: stratus.spans.sqs_message_attributes) and the message's span continues that
trace; without them (S3's own notifications) it is a child of the invocation's span.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from stratus import spans
from stratus.config import get_settings
from stratus.ingest.events import parse_notification
from stratus.reindex import queue as reindex_queue

log = logging.getLogger(__name__)


def process_sqs_batch(event: dict[str, Any], context: Any = None) -> tuple[dict[str, Any], Counter[str]]:
    """Process an SQS batch; returns the `batchItemFailures` response and a count of outcomes."""
    from stratus.ingest.sources import handle_object_event

    outcomes: Counter[str] = Counter()

    def record_handler(record: SQSRecord) -> None:
        try:
            _handle(record)
        except Exception:
            log.exception("message %s failed; it returns to the queue", record.message_id)
            raise

    def _handle(record: SQSRecord) -> None:
        with spans.continued(_trace_context(record)), spans.span("message", message_id=record.message_id):
            tenant = reindex_queue.parse(record.body)
            if tenant is None:
                _objects(record)
            else:  # a re-embedding's next part (stratus.reindex.queue)
                remaining = getattr(context, "get_remaining_time_in_millis", None)
                outcomes[f"reindex_{reindex_queue.handle(tenant, get_settings(), remaining).status}"] += 1

    def _objects(record: SQSRecord) -> None:
        for object_event in parse_notification(record.body):
            result = handle_object_event(object_event)
            outcomes[result.status] += 1
            log.info(
                "%s s3://%s/%s: %s", object_event.event_name, object_event.bucket, object_event.key,
                result.status,
                extra={"status": result.status, "version": result.version, "chunks": result.chunk_count,
                       "reason": result.reason, "timings": result.timings, "message_id": record.message_id},
            )

    # A batch that fails as a whole still answers with batchItemFailures (same effect, one code path).
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                        context=context)
    outcomes["failed_messages"] = len(response.get("batchItemFailures", []))
    return dict(response), outcomes


def _trace_context(record: SQSRecord) -> dict[str, str] | None:
    """The W3C trace context a traced sender put in the message's attributes, if any."""
    if not spans.otel_enabled():
        return None
    attributes = record.raw_event.get("messageAttributes") or {}
    carried = {name: (attributes.get(name) or {}).get("stringValue") for name in (spans.TRACEPARENT, spans.TRACESTATE)}
    return {k: v for k, v in carried.items() if isinstance(v, str)} or None
