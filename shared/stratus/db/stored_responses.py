"""Stored Responses API state (SQL adapter; callers hold a tenant transaction)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def save(conn: psycopg.Connection, tenant_id: str, response_id: str, messages: list[dict[str, Any]],
         response: dict[str, Any]) -> None:
    conn.execute("INSERT INTO stored_responses (tenant_id, id, messages, response) VALUES (%s, %s, %s, %s)",
                 [tenant_id, response_id, Jsonb(messages), Jsonb(response)])


def messages(conn: psycopg.Connection, tenant_id: str, response_id: str) -> list[dict[str, Any]] | None:
    """The conversation through a stored response; None when the tenant has no such response."""
    row = conn.execute("SELECT messages FROM stored_responses WHERE tenant_id = %s AND id = %s",
                       [tenant_id, response_id]).fetchone()
    return list(row[0]) if row else None


def response(conn: psycopg.Connection, tenant_id: str, response_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT response FROM stored_responses WHERE tenant_id = %s AND id = %s",
                       [tenant_id, response_id]).fetchone()
    return dict(row[0]) if row else None


def delete(conn: psycopg.Connection, tenant_id: str, response_id: str) -> bool:
    cur = conn.execute("DELETE FROM stored_responses WHERE tenant_id = %s AND id = %s", [tenant_id, response_id])
    return cur.rowcount > 0
