"""API key storage (SQL adapter). Lookups by prefix go through a SECURITY DEFINER function because the
tenant is not known until the key is found; everything else runs in the caller's tenant transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import psycopg

from stratus.errors import NotFound

Connection = psycopg.Connection  # for domain signatures, which do not import the driver

_COLUMNS = ("id::text, tenant_id, prefix, name, scopes, created_at, revoked_at, last_used_at, "
            "requests_per_minute, tokens_per_minute")


@dataclass(frozen=True)
class KeyRow:
    """A key as lists show it, never the secret or the hash (stratus.gateway.keys.KeyInfo is this type)."""

    id: str
    tenant_id: str
    prefix: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    requests_per_minute: int | None
    tokens_per_minute: int | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class LookupRow(NamedTuple):
    id: str
    tenant_id: str
    key_hash: bytes
    scopes: list[str]
    revoked_at: datetime | None
    requests_per_minute: int | None
    tokens_per_minute: int | None


class PrefixTaken(Exception):
    """The random prefix collided with an existing key's (the caller draws another)."""


def insert_key(conn: Connection, tenant_id: str, *, prefix: str, key_hash: bytes, name: str,
               scopes: list[str], requests_per_minute: int | None, tokens_per_minute: int | None) -> KeyRow:
    try:
        with conn.transaction():  # a savepoint, so a collision leaves the caller's transaction usable
            row = conn.execute(
                "INSERT INTO api_keys (tenant_id, prefix, key_hash, name, scopes, requests_per_minute,"
                f" tokens_per_minute) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                [tenant_id, prefix, key_hash, name, scopes, requests_per_minute, tokens_per_minute]).fetchone()
    except psycopg.errors.UniqueViolation as err:
        raise PrefixTaken(prefix) from err
    except psycopg.errors.ForeignKeyViolation:
        raise NotFound(f"no tenant {tenant_id!r}; create it first", field="tenant_id") from None
    assert row is not None
    return KeyRow(*row)


def lookup(conn: Connection, prefix: str, key_hash: bytes) -> LookupRow | None:
    """The key with this prefix in any tenant and state (refreshes last_used_at when the hash matches)."""
    row = conn.execute("SELECT id::text, tenant_id, key_hash, scopes, revoked_at, requests_per_minute,"
                       " tokens_per_minute FROM gateway_key_lookup(%s, %s)", [prefix, key_hash]).fetchone()
    return LookupRow(row[0], row[1], bytes(row[2]), *row[3:]) if row else None


def list_keys(conn: Connection, tenant_id: str) -> list[KeyRow]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = %s ORDER BY created_at, prefix",
                        [tenant_id]).fetchall()
    return [KeyRow(*r) for r in rows]


def revoke(conn: Connection, tenant_id: str, key_id_or_prefix: str) -> KeyRow | None:
    """Marks the key revoked (once: a second revoke keeps the first time); None if not this tenant's."""
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())"
        " WHERE tenant_id = %s AND (prefix = %s OR id::text = %s)"
        f" RETURNING {_COLUMNS}", [tenant_id, key_id_or_prefix, key_id_or_prefix.lower()]).fetchone()
    return KeyRow(*row) if row else None
