"""Stored guard policy overrides per tenant (SQL adapter; callers hold a tenant transaction)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def get_overrides(conn: psycopg.Connection, tenant_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT policy FROM guard_policies WHERE tenant_id = %s", [tenant_id]).fetchone()
    return dict(row[0]) if row else {}


def set_overrides(conn: psycopg.Connection, tenant_id: str, overrides: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO guard_policies (tenant_id, policy) VALUES (%s, %s) "
        "ON CONFLICT (tenant_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()",
        [tenant_id, Jsonb(overrides)])
