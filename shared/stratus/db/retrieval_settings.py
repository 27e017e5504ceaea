"""Stored retrieval settings per tenant (SQL adapter; callers hold a tenant transaction)."""

from __future__ import annotations

import psycopg

FIELDS = ("reranker", "rerank_model")


def get(conn: psycopg.Connection, tenant_id: str) -> dict[str, str | None]:
    """The tenant's stored choices; {} when it has none (every field then follows the settings)."""
    row = conn.execute("SELECT reranker, rerank_model FROM retrieval_settings WHERE tenant_id = %s",
                       [tenant_id]).fetchone()
    return dict(zip(FIELDS, row, strict=True)) if row else {}


def put(conn: psycopg.Connection, tenant_id: str, values: dict[str, str | None]) -> None:
    conn.execute(
        "INSERT INTO retrieval_settings (tenant_id, reranker, rerank_model) VALUES (%s, %s, %s) "
        "ON CONFLICT (tenant_id) DO UPDATE SET reranker = EXCLUDED.reranker, "
        "rerank_model = EXCLUDED.rerank_model, updated_at = now()",
        [tenant_id, values.get("reranker"), values.get("rerank_model")])
