"""Trace rows (SQL adapter; callers hold a tenant transaction)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from stratus.db.connection import relax_commit

Connection = psycopg.Connection

_JSON = ("timings_ms", "guard")
COLUMNS = ("request_id", "tenant_id", "key_prefix", "route", "method", "status_code", "model_alias", "deployment",
           "provider", "prompt_name", "prompt_version", "input_tokens", "output_tokens", "cost_usd", "cache_status",
           "chunk_ids", "timings_ms", "latency_ms", "status", "error_code", "error_message", "streamed", "created_at",
           "guard")


def insert_trace(conn: Connection, row: dict[str, Any], *, relaxed: bool = True) -> None:
    """`relaxed`: the transaction's commit does not wait for the WAL flush (unless it carries more than
    bookkeeping: a settlement shares the trace's transaction with `relaxed=False`)."""
    if relaxed:
        relax_commit(conn)  # bookkeeping written after the response: no need to wait for the WAL flush
    values = [Jsonb(row.get(c)) if c in _JSON and row.get(c) is not None else row.get(c) for c in COLUMNS]
    conn.execute(f"INSERT INTO traces ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})", values)


def get_trace(conn: Connection, tenant_id: str, request_id: str) -> dict[str, Any] | None:
    """The latest trace with this request id (a client may reuse its x-request-id)."""
    rows = _select(conn, "WHERE tenant_id = %s AND request_id = %s ORDER BY created_at DESC, id DESC LIMIT 1",
                   [tenant_id, request_id])
    return rows[0] if rows else None


def list_traces(conn: Connection, tenant_id: str, limit: int) -> list[dict[str, Any]]:
    return _select(conn, "WHERE tenant_id = %s ORDER BY created_at DESC, id DESC LIMIT %s", [tenant_id, limit])


def _select(conn: Connection, where: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM traces {where}", params)
    out = []
    for row in cur.fetchall():
        item = dict(zip(COLUMNS, row, strict=True))
        item["cost_usd"] = float(item["cost_usd"])
        item["chunk_ids"] = list(item["chunk_ids"])
        out.append(item)
    return out
