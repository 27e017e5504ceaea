"""Prompt registry storage: published versions and labels (global or per tenant) with their history.

Functions run inside the caller's transaction. On the application role RLS shows global labels plus
the bound tenant's and lets it write only the tenant's; queries also filter `tenant_id` explicitly.
Driver errors that mean something to the registry are translated here: a refused write becomes
Forbidden, an unknown tenant NotFound.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from stratus.errors import Forbidden, NotFound

Connection = psycopg.Connection  # for domain signatures, which do not import the driver


@dataclass(frozen=True)
class StoredVersion:
    name: str
    version: int
    content: dict[str, Any]
    content_hash: str


@dataclass(frozen=True)
class LabelRow:
    name: str
    label: str
    version: int
    tenant_id: str | None


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    version: int


@contextmanager
def translated(action: str) -> Iterator[None]:
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as err:
        raise Forbidden(f"{action}: not allowed on this connection ({err.diag.message_primary}); global"
                        " prompts and labels are managed on an administrative connection", field="tenant") from None
    except psycopg.errors.ForeignKeyViolation as err:
        if "tenant" in (err.diag.constraint_name or ""):
            raise NotFound(f"{action}: no such tenant", field="tenant") from None
        raise


def in_transaction(conn: Connection) -> bool:
    return conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE


def bound_tenant(conn: Connection) -> str:
    from stratus.db.connection import bound_in_transaction

    known = bound_in_transaction(conn)  # inside tenant_transaction: what it bound, without a round trip
    if known is not None:
        return known
    row = conn.execute("SELECT coalesce(current_setting('app.tenant_id', true), '')").fetchone()
    return str(row[0]) if row else ""


def lock_registry(conn: Connection) -> None:
    """Serialises publishing (concurrent cold starts syncing the same files) until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('stratus.prompts.sync'))")


def lock_label(conn: Connection, name: str, label: str, tenant_id: str | None) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('stratus.prompts.label:' || %s))",
                 [f"{tenant_id or ''}/{name}/{label}"])


def published_hashes(conn: Connection, names: list[str]) -> dict[tuple[str, int], str]:
    rows = conn.execute("SELECT name, version, content_hash FROM prompt_versions WHERE name = ANY(%s)",
                        [names]).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def insert_version(conn: Connection, name: str, version: int, content: dict[str, Any], content_hash: str) -> bool:
    """Publish a version; False when it already exists (the caller compares hashes)."""
    with translated(f"publish prompt {name} v{version}"):
        row = conn.execute(
            "INSERT INTO prompt_versions (name, version, content, content_hash) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name, version) DO NOTHING RETURNING 1",
            [name, version, Jsonb(content), content_hash],
        ).fetchone()
    return row is not None


def get_version(conn: Connection, name: str, version: int) -> StoredVersion | None:
    row = conn.execute("SELECT name, version, content, content_hash FROM prompt_versions"
                       " WHERE name = %s AND version = %s", [name, version]).fetchone()
    return StoredVersion(*row) if row else None


def resolve_label(conn: Connection, name: str, label: str, tenant_id: str | None) -> tuple[StoredVersion, str | None]:
    """The version `label` points at for the tenant (its own label wins over the global one), and whose
    label it was (the tenant id, or None for global). NotFound when neither exists."""
    row = conn.execute(
        "SELECT v.name, v.version, v.content, v.content_hash, l.tenant_id"
        " FROM prompt_labels l JOIN prompt_versions v ON v.name = l.name AND v.version = l.version"
        " WHERE l.name = %s AND l.label = %s AND (l.tenant_id IS NULL OR l.tenant_id = %s)"
        " ORDER BY l.tenant_id IS NULL LIMIT 1",
        [name, label, tenant_id],
    ).fetchone()
    if row is None:
        raise NotFound(f"prompt {name!r} has no label {label!r}", field="label")
    return StoredVersion(*row[:4]), row[4]


def label_version(conn: Connection, name: str, label: str, tenant_id: str | None) -> int | None:
    """The version of exactly this label (global when tenant_id is None), without fallback."""
    row = conn.execute("SELECT version FROM prompt_labels WHERE name = %s AND label = %s"
                       " AND tenant_id IS NOT DISTINCT FROM %s", [name, label, tenant_id]).fetchone()
    return int(row[0]) if row else None


def set_label(conn: Connection, name: str, label: str, version: int, tenant_id: str | None, action: str) -> None:
    """Point the label at `version` and record the move. Call with `lock_label` held."""
    what = f"set label {label!r} of prompt {name}" + (f" for tenant {tenant_id}" if tenant_id else "")
    with translated(what):
        updated = conn.execute(
            "UPDATE prompt_labels SET version = %s, updated_at = now()"
            " WHERE name = %s AND label = %s AND tenant_id IS NOT DISTINCT FROM %s RETURNING 1",
            [version, name, label, tenant_id],
        ).fetchone()
        if updated is None:
            conn.execute("INSERT INTO prompt_labels (tenant_id, name, label, version) VALUES (%s, %s, %s, %s)",
                         [tenant_id, name, label, version])
        conn.execute("INSERT INTO prompt_label_history (tenant_id, name, label, version, action)"
                     " VALUES (%s, %s, %s, %s, %s)", [tenant_id, name, label, version, action])


def live_history(conn: Connection, name: str, label: str, tenant_id: str | None, limit: int = 2) -> list[HistoryEntry]:
    """The label's latest moves that were not rolled back, newest first."""
    rows = conn.execute(
        "SELECT id, version FROM prompt_label_history WHERE name = %s AND label = %s"
        " AND tenant_id IS NOT DISTINCT FROM %s AND rolled_back_at IS NULL ORDER BY id DESC LIMIT %s",
        [name, label, tenant_id, limit],
    ).fetchall()
    return [HistoryEntry(*r) for r in rows]


def roll_back_to(conn: Connection, name: str, label: str, tenant_id: str | None, undone: HistoryEntry,
                 previous: HistoryEntry | None) -> None:
    """Mark `undone` rolled back; point the label at `previous`, or drop the label when there is none
    (a tenant's label then falls back to the global one). Call with `lock_label` held."""
    what = f"roll back label {label!r} of prompt {name}" + (f" for tenant {tenant_id}" if tenant_id else "")
    with translated(what):
        conn.execute("UPDATE prompt_label_history SET rolled_back_at = now() WHERE id = %s", [undone.id])
        if previous is None:
            conn.execute("DELETE FROM prompt_labels WHERE name = %s AND label = %s"
                         " AND tenant_id IS NOT DISTINCT FROM %s", [name, label, tenant_id])
        else:
            conn.execute("UPDATE prompt_labels SET version = %s, updated_at = now() WHERE name = %s AND label = %s"
                         " AND tenant_id IS NOT DISTINCT FROM %s", [previous.version, name, label, tenant_id])


def list_versions(conn: Connection) -> list[tuple[str, int, str]]:
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT name, version, content_hash FROM prompt_versions ORDER BY name, version").fetchall()]


def list_labels(conn: Connection, tenant_id: str | None) -> list[LabelRow]:
    rows = conn.execute(
        "SELECT name, label, version, tenant_id FROM prompt_labels"
        " WHERE tenant_id IS NULL OR tenant_id = %s ORDER BY name, label, tenant_id NULLS FIRST",
        [tenant_id],
    ).fetchall()
    return [LabelRow(*r) for r in rows]
