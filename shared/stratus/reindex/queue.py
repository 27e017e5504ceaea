"""A re-embedding on AWS: a chain of messages on the ingest queue, one in flight per tenant.

The ingest function (already sized for embedding, with its database connections bounded by the queue's
MaximumConcurrency) takes a `{"stratus": "reindex", "tenant_id": ...}` message, runs batches until its time
is nearly spent or the switch is made, and sends the next message of the chain. A crash or a timeout
leaves the message to come back after the visibility timeout; the job resumes from its persisted cursor.
The message carries only the tenant: it can advance a re-embedding an admin started, nothing more.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from stratus.config import Settings
from stratus.errors import InvalidInput
from stratus.reindex import job
from stratus.tenants import check_tenant_id

log = logging.getLogger(__name__)
KIND = "reindex"
# Stop starting batches when less than this is left: one batch of a hosted model can take ~30 s with retries.
RESERVE_MS = 60_000
# At most this long per message: S3 notifications in the same batch still get their time.
SLICE_S = 120.0


def message(tenant_id: str) -> str:
    return json.dumps({"stratus": KIND, "tenant_id": check_tenant_id(tenant_id)})


def parse(body: str | dict[str, Any]) -> str | None:
    """The tenant of a re-embedding message; None for any other message (an S3 notification)."""
    try:
        data = json.loads(body) if isinstance(body, str) else body
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("stratus") != KIND:
        return None
    tenant = data.get("tenant_id")
    if not isinstance(tenant, str):
        raise InvalidInput("a reindex message needs its tenant_id", field="tenant_id")
    return check_tenant_id(tenant)


def send(tenant_id: str, settings: Settings) -> bool:
    """Queue the next part of the tenant's re-embedding; False when no queue is configured."""
    if not settings.ingest_queue_url:
        return False
    from stratus.aws.clients import client

    client("sqs").send_message(QueueUrl=settings.ingest_queue_url, MessageBody=message(tenant_id))
    return True


def handle(tenant_id: str, settings: Settings, remaining_ms: Callable[[], int] | None = None) -> job.Progress:
    """Batches until done or until `remaining_ms()` falls below the reserve; then the chain's next message."""
    started = time.monotonic()
    left = remaining_ms or (lambda: RESERVE_MS + 1)  # without a Lambda context only the slice bounds it
    progress = job.status(None, tenant_id, settings)
    while progress.target_model is not None and left() > RESERVE_MS and time.monotonic() - started < SLICE_S:
        progress = job.step(None, tenant_id, settings)
    if progress.target_model is not None:
        send(tenant_id, settings)
    log.info("tenant %s: re-embedding %s (%d/%d)", tenant_id, progress.status, progress.embedded, progress.total)
    return progress
