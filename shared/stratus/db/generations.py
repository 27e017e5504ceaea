"""Generation records and tenant model overrides (SQL adapter; callers hold a tenant transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def tenant_exists(conn: psycopg.Connection, tenant_id: str) -> bool:
    return conn.execute("SELECT 1 FROM tenants WHERE id = %s", [tenant_id]).fetchone() is not None


def model_override(conn: psycopg.Connection, tenant_id: str, alias: str) -> list[str] | None:
    row = conn.execute("SELECT deployments FROM tenant_model_overrides WHERE tenant_id = %s AND alias = %s",
                       [tenant_id, alias]).fetchone()
    return list(row[0]) if row else None


def set_model_override(conn: psycopg.Connection, tenant_id: str, alias: str, deployments: Sequence[str]) -> None:
    conn.execute(
        "INSERT INTO tenant_model_overrides (tenant_id, alias, deployments) VALUES (%s, %s, %s) "
        "ON CONFLICT (tenant_id, alias) DO UPDATE SET deployments = EXCLUDED.deployments, updated_at = now()",
        [tenant_id, alias, list(deployments)])


def clear_model_override(conn: psycopg.Connection, tenant_id: str, alias: str) -> None:
    conn.execute("DELETE FROM tenant_model_overrides WHERE tenant_id = %s AND alias = %s", [tenant_id, alias])


_COLUMNS = ("tenant_id", "request_id", "mode", "model_alias", "deployment", "provider", "model", "prompt_name",
            "prompt_version", "prompt_hash", "status", "error_code", "cache_status", "cache_similarity",
            "input_tokens", "output_tokens", "cached_input_tokens", "cost_usd", "latency_ms", "chunk_ids",
            "cited_chunk_ids", "attempts")


_DEFAULTS: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0, "cost_usd": 0,
                             "chunk_ids": [], "cited_chunk_ids": [], "attempts": []}


def record_generation(conn: psycopg.Connection, row: dict[str, Any]) -> int:
    """Insert one generation; a retried task with the same request id updates the row (at-least-once)."""
    row = {**_DEFAULTS, **{k: v for k, v in row.items() if v is not None}}
    values = [Jsonb(row[c]) if c == "attempts" else row.get(c) for c in _COLUMNS]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c not in ("tenant_id", "request_id"))
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    found = conn.execute(
        f"INSERT INTO generations ({', '.join(_COLUMNS)}) VALUES ({placeholders}) "
        f"ON CONFLICT (tenant_id, request_id) DO UPDATE SET {updates}, created_at = now() RETURNING id",
        values).fetchone()
    assert found is not None
    return int(found[0])


def get_generation(conn: psycopg.Connection, tenant_id: str, request_id: str) -> dict[str, Any] | None:
    cur = conn.execute("SELECT * FROM generations WHERE tenant_id = %s AND request_id = %s", [tenant_id, request_id])
    row = cur.fetchone()
    if row is None:
        return None
    assert cur.description is not None
    return {d.name: v for d, v in zip(cur.description, row, strict=True)}
