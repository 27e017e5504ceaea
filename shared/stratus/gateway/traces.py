"""One trace record per gateway request, written after the response has been sent.

`record_trace` never raises: a trace that cannot be written is logged (with the request id) and the
request it describes is unaffected. Requests without a tenant (401s) have no trace row: traces live
under the tenant's Row Level Security; their log line carries the request id instead.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratus.db import traces as store
from stratus.db.connection import get_connection, tenant_transaction

log = logging.getLogger(__name__)

MAX_ERROR_MESSAGE = 2000


class TraceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str
    tenant_id: str
    key_prefix: str | None = None
    route: str
    method: str
    status_code: int
    model_alias: str | None = None
    deployment: str | None = None
    provider: str | None = None
    prompt_name: str | None = None
    prompt_version: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cache_status: str | None = None
    chunk_ids: list[int] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)  # each step's latency: auth, admit, retrieve...
    latency_ms: float
    status: Literal["ok", "error"] = "ok"
    error_code: str | None = None
    error_message: str | None = None
    streamed: bool = False
    guard: dict[str, Any] | None = None  # the rails' verdicts (stratus.workflow_state.GuardSummary)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def record_trace(record: TraceRecord, conn: store.Connection | None = None) -> None:
    """Stores the trace in its own tenant transaction; failures are logged, never raised."""
    try:
        conn = conn or get_connection()
        row = trace_row(record)
        with tenant_transaction(record.tenant_id, conn, relaxed=True):
            store.insert_trace(conn, row)
    except Exception:  # a trace is bookkeeping: losing one must not fail or delay the request it describes
        log.exception("trace not recorded", extra={"request_id": record.request_id, "tenant_id": record.tenant_id})


def trace_row(record: TraceRecord) -> dict[str, Any]:
    row: dict[str, Any] = record.model_dump()
    if row["error_message"] and len(row["error_message"]) > MAX_ERROR_MESSAGE:
        row["error_message"] = row["error_message"][:MAX_ERROR_MESSAGE]
    return row


def get_trace(conn: store.Connection, tenant_id: str, request_id: str) -> dict[str, Any] | None:
    with tenant_transaction(tenant_id, conn):
        return store.get_trace(conn, tenant_id, request_id)


def list_traces(conn: store.Connection, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
    with tenant_transaction(tenant_id, conn):
        return store.list_traces(conn, tenant_id, max(1, min(int(limit), 1000)))
