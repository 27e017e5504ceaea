"""Rate windows and budget reservations (SQL adapter): admission and settlement are one call each to the
PL/pgSQL functions in migration 0006, inside the caller's tenant transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from stratus.errors import InvalidInput

Connection = psycopg.Connection

_ADMIT_COLUMNS = ("admitted", "reason", "scope", "window_end", "tenant_rpm", "tenant_requests", "tenant_tpm",
                  "tenant_tokens", "key_rpm", "key_requests", "key_tpm", "key_tokens", "budget_usd",
                  "budget_period", "spent_usd", "reserved_usd")


def admit(conn: Connection, *, tenant_id: str, key_id: str | None, request_id: str, tokens: int,
          max_cost_usd: float, now: datetime | None, tenant_rpm: int, tenant_tpm: int, key_rpm: int | None,
          key_tpm: int | None, default_key_rpm: int | None, default_key_tpm: int | None,
          reservation_ttl: timedelta) -> dict[str, Any]:
    """Counts and reserves the request, or refuses it and changes nothing; the figures behind either."""
    try:
        row = _admit(conn, [tenant_id, key_id, request_id, tokens, Decimal(str(max_cost_usd)), now, tenant_rpm,
                            tenant_tpm, key_rpm, key_tpm, default_key_rpm, default_key_tpm, reservation_ttl])
    except psycopg.errors.UniqueViolation:
        raise InvalidInput(f"request id {request_id!r} is already in use by a request in flight; send a unique"
                           " x-request-id", field="x-request-id") from None
    figures = dict(zip(_ADMIT_COLUMNS, row, strict=True))
    for money in ("budget_usd", "spent_usd", "reserved_usd"):
        figures[money] = None if figures[money] is None else float(figures[money])
    return figures


def _admit(conn: Connection, params: list[Any]) -> tuple[Any, ...]:
    row = conn.execute(
        f"SELECT {', '.join(_ADMIT_COLUMNS)} FROM gateway_admit(%s::text, %s::uuid, %s::text, %s::integer,"
        " %s::numeric, %s::timestamptz, %s::integer, %s::integer, %s::integer, %s::integer, %s::integer,"
        " %s::integer, %s::interval)", params).fetchone()
    assert row is not None
    return tuple(row)


def settle(conn: Connection, *, tenant_id: str, request_id: str, tokens: int, cost_usd: float,
           now: datetime | None) -> bool:
    """Replaces the request's reservation by its real figures; False if there was none (already settled)."""
    row = conn.execute("SELECT gateway_settle(%s::text, %s::text, %s::integer, %s::numeric, %s::timestamptz)",
                       [tenant_id, request_id, tokens, Decimal(str(cost_usd)), now]).fetchone()
    return bool(row and row[0])


def reservation(conn: Connection, tenant_id: str, request_id: str) -> dict[str, Any] | None:
    cur = conn.execute("SELECT request_id, key_id::text, window_start, tokens, amount_usd, expires_at"
                       " FROM budget_reservations WHERE tenant_id = %s AND request_id = %s", [tenant_id, request_id])
    row = cur.fetchone()
    if row is None:
        return None
    return {"request_id": row[0], "key_id": row[1], "window_start": row[2], "tokens": row[3],
            "amount_usd": float(row[4]), "expires_at": row[5]}


def record_usage(conn: Connection, tenant_id: str, *, tokens: int, cost_usd: float) -> None:
    """Spend outside a gateway request (a hosted model embedding a document at ingestion) into the tenant's
    day: it counts against the budget like a request's, though nothing was admitted for it."""
    if tokens <= 0 and cost_usd <= 0:
        return
    conn.execute("INSERT INTO budget_usage AS u (tenant_id, day, spent_usd, requests, tokens)"
                 " VALUES (%s, (now() AT TIME ZONE 'UTC')::date, %s, 0, %s)"
                 " ON CONFLICT (tenant_id, day) DO UPDATE SET spent_usd = u.spent_usd + excluded.spent_usd,"
                 " tokens = u.tokens + excluded.tokens", [tenant_id, Decimal(str(cost_usd)), int(tokens)])
