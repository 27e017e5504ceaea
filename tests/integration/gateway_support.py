"""Helpers for the gateway's integration tests: tenants with keys, and the app behind a test client."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from stratus.db import documents
from stratus.db.connection import connect, tenant_transaction


def tenant_with_key(url: str, prefix: str = "t", scopes: Iterable[str] = ("inference", "documents"),
                    **limits: int | None) -> tuple[str, str]:
    """A fresh tenant and a key for it: (tenant id, key text)."""
    from stratus.gateway.keys import create_key

    tenant_id = f"{prefix}-{uuid.uuid4().hex[:12]}"
    conn = connect(url)
    try:
        with tenant_transaction(tenant_id, conn):
            documents.ensure_tenant(conn, tenant_id)
        key, _ = create_key(conn, tenant_id, name="test", scopes=tuple(scopes), **limits)
    finally:
        conn.close()
    return tenant_id, key


def key_for(url: str, tenant_id: str, scopes: Iterable[str] = ("inference", "documents")) -> str:
    """Another key for an existing tenant."""
    from stratus.gateway.keys import create_key

    conn = connect(url)
    try:
        return create_key(conn, tenant_id, name="test", scopes=tuple(scopes))[0]
    finally:
        conn.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def fresh_rate_window(margin_s: float = 8.0) -> None:
    """Rate limits count in UTC minute windows: a test that fills one must not straddle a rollover."""
    import time
    from datetime import UTC, datetime

    left = 60 - (datetime.now(UTC).second + datetime.now(UTC).microsecond / 1e6)
    if left < margin_s:
        time.sleep(left + 0.05)
