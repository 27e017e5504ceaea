"""Tenant rows and their limits (SQL adapter). Listing every tenant goes through a SECURITY DEFINER
function (admin only); the rest runs in the caller's transaction bound to the tenant concerned.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import psycopg

Connection = psycopg.Connection

LIMIT_COLUMNS = ("requests_per_minute", "tokens_per_minute", "key_requests_per_minute", "key_tokens_per_minute",
                 "budget_usd", "budget_period")


def insert_tenant(conn: Connection, tenant_id: str, name: str) -> tuple[dict[str, Any], bool]:
    """The tenant row and whether this call created it (an existing tenant is returned unchanged)."""
    created = conn.execute("INSERT INTO tenants (id, name) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING"
                           " RETURNING id", [tenant_id, name]).fetchone() is not None
    conn.execute("INSERT INTO lexical_stats (tenant_id) VALUES (%s) ON CONFLICT (tenant_id) DO NOTHING", [tenant_id])
    row = get_tenant(conn, tenant_id)
    assert row is not None
    return row, created


def get_tenant(conn: Connection, tenant_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT id, name, created_at FROM tenants WHERE id = %s", [tenant_id]).fetchone()
    return {"id": row[0], "name": row[1], "created_at": row[2]} if row else None


def list_tenants(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT id, name, created_at FROM gateway_list_tenants()").fetchall()
    return [{"id": r[0], "name": r[1], "created_at": r[2]} for r in rows]


def get_limits(conn: Connection, tenant_id: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {', '.join(LIMIT_COLUMNS)} FROM tenant_limits WHERE tenant_id = %s",
                       [tenant_id]).fetchone()
    return dict(zip(LIMIT_COLUMNS, row, strict=True)) if row else None


def upsert_limits(conn: Connection, tenant_id: str, values: dict[str, Any]) -> None:
    """Sets the given columns (None clears one back to the default); columns not given keep their value."""
    columns = [c for c in LIMIT_COLUMNS if c in values]
    if not columns:
        conn.execute("INSERT INTO tenant_limits (tenant_id) VALUES (%s) ON CONFLICT (tenant_id) DO NOTHING",
                     [tenant_id])
        return
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    conn.execute(
        f"INSERT INTO tenant_limits (tenant_id, {', '.join(columns)}) VALUES (%s{', %s' * len(columns)})"
        f" ON CONFLICT (tenant_id) DO UPDATE SET {updates}, updated_at = now()",
        [tenant_id, *(values[c] for c in columns)])


def window_counts(conn: Connection, tenant_id: str, subject: str, window_start: datetime) -> tuple[int, int]:
    """(requests, tokens) counted for the subject in the window that starts at window_start."""
    row = conn.execute("SELECT requests, tokens FROM rate_counters WHERE tenant_id = %s AND subject = %s"
                       " AND window_start = %s", [tenant_id, subject, window_start]).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def spend_since(conn: Connection, tenant_id: str, since: date) -> tuple[float, int, int]:
    """(spent USD, settled requests, settled tokens) from `since` (a UTC day) on."""
    row = conn.execute("SELECT coalesce(sum(spent_usd), 0), coalesce(sum(requests), 0), coalesce(sum(tokens), 0)"
                       " FROM budget_usage WHERE tenant_id = %s AND day >= %s", [tenant_id, since]).fetchone()
    assert row is not None
    return float(row[0]), int(row[1]), int(row[2])


def live_reservations(conn: Connection, tenant_id: str, now: datetime) -> tuple[float, int]:
    """(reserved USD, in-flight requests) of reservations that have not expired."""
    row = conn.execute("SELECT coalesce(sum(amount_usd), 0), count(*) FROM budget_reservations"
                       " WHERE tenant_id = %s AND expires_at > %s", [tenant_id, now]).fetchone()
    assert row is not None
    return float(row[0]), int(row[1])
