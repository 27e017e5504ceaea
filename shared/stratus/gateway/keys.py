"""API keys: created random and shown once, stored as a sha256 with a lookup prefix, scoped, revocable.

Key text: `sk-stratus-<prefix>_<secret>`; the prefix (12 base32 characters) finds the row, the secret
(32 random bytes, URL-safe base64) makes it unguessable. Keys carry 256 bits of entropy, so a fast hash
is the right one (a slow KDF protects low-entropy passwords, which these are not). Authentication does
the same work whether the prefix is unknown, the secret wrong or the key revoked: one lookup, one hash,
one constant-time comparison (against a dummy digest when there is no row), and one answer: None.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from stratus.db import keys as store
from stratus.db.connection import tenant_transaction
from stratus.errors import InvalidInput, NotFound

SCOPES = ("inference", "documents", "admin")
DEFAULT_SCOPES = ("inference", "documents")

KEY_PREFIX = "sk-stratus-"
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32, lowercase
_PREFIX_LEN = 12
_SECRET_BYTES = 32
_SECRET_MIN_LEN = 43  # len(token_urlsafe(32))
_MAX_KEY_LEN = 200
_DUMMY_HASH = hashlib.sha256(b"stratus: no key has this prefix").digest()


@dataclass(frozen=True)
class Principal:
    """Who is calling; attached to every authenticated request."""

    tenant_id: str
    key_id: str
    key_prefix: str
    scopes: frozenset[str]
    requests_per_minute: int | None  # the key's own limits (None: the tenant's or settings' default)
    tokens_per_minute: int | None

    def has(self, scope: str) -> bool:
        return scope in self.scopes


# What lists show: the stored row as it is (a frozen dataclass; never the secret or the hash).
KeyInfo = store.KeyRow


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_key(key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX) or len(key) > _MAX_KEY_LEN:
        return None
    rest = key[len(KEY_PREFIX):]
    prefix, sep, secret = rest[:_PREFIX_LEN], rest[_PREFIX_LEN:_PREFIX_LEN + 1], rest[_PREFIX_LEN + 1:]
    if sep != "_" or len(secret) < _SECRET_MIN_LEN or any(c not in _PREFIX_ALPHABET for c in prefix):
        return None
    return prefix, secret


def bearer_token(authorization_header: str | None) -> str | None:
    if not authorization_header:
        return None
    scheme, _, token = authorization_header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def new_key_text() -> tuple[str, str]:
    """(prefix, full key text)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_LEN))
    return prefix, f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def check_scopes(scopes: Iterable[str]) -> list[str]:
    chosen = sorted(set(scopes), key=SCOPES.index) if all(s in SCOPES for s in scopes) else None
    if not chosen:
        bad = [s for s in scopes if s not in SCOPES]
        detail = f"unknown scope(s) {', '.join(map(repr, bad))}" if bad else "at least one scope is required"
        raise InvalidInput(f"scopes: {detail}; choose from {', '.join(SCOPES)}", field="scopes")
    return chosen


def _check_limit(value: int | None, field: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidInput(f"{field} must be a positive integer or unset, got {value!r}", field=field)
    return value


def create_key(conn: store.Connection, tenant_id: str, *, name: str = "", scopes: Iterable[str] = DEFAULT_SCOPES,
               requests_per_minute: int | None = None, tokens_per_minute: int | None = None) -> tuple[str, KeyInfo]:
    """A new key for an existing tenant: (the key text, shown once and never stored; its info)."""
    chosen = check_scopes(list(scopes))
    if len(name) > 200:
        raise InvalidInput("name must be at most 200 characters", field="name")
    rpm = _check_limit(requests_per_minute, "requests_per_minute")
    tpm = _check_limit(tokens_per_minute, "tokens_per_minute")
    with tenant_transaction(tenant_id, conn):
        for _ in range(3):  # 60-bit prefixes: a collision is all but impossible, and retried if it happens
            prefix, text = new_key_text()
            try:
                row = store.insert_key(conn, tenant_id, prefix=prefix, key_hash=hash_key(text), name=name,
                                       scopes=chosen, requests_per_minute=rpm, tokens_per_minute=tpm)
                return text, row
            except store.PrefixTaken:
                continue
    raise RuntimeError("could not draw an unused key prefix in 3 tries")


def authenticate(conn: store.Connection, authorization_header: str | None) -> Principal | None:
    """The caller of a request, or None (answer 401) for a missing, malformed, unknown or revoked key."""
    token = bearer_token(authorization_header)
    if token is None:
        return None  # nothing secret to protect: the header itself is absent or not a bearer token
    parsed = parse_key(token)
    presented = hash_key(token)
    row = _lookup(conn, parsed[0], presented) if parsed else None
    stored = row.key_hash if row is not None else _DUMMY_HASH
    matches = hmac.compare_digest(presented, stored)
    if not matches or row is None or row.revoked_at is not None:
        return None
    return Principal(tenant_id=row.tenant_id, key_id=row.id, key_prefix=parsed[0] if parsed else "",
                     scopes=frozenset(row.scopes), requests_per_minute=row.requests_per_minute,
                     tokens_per_minute=row.tokens_per_minute)


def _lookup(conn: store.Connection, prefix: str, presented: bytes) -> store.LookupRow | None:
    # Its own short transaction (the lookup may refresh last_used_at), or a savepoint inside the caller's.
    # The lookup is one statement, so on an idle connection it is sent in autocommit: the statement is
    # its own transaction, without the two round trips of BEGIN and COMMIT.
    if not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        conn.autocommit = True
        try:
            return store.lookup(conn, prefix, presented)
        finally:
            if not conn.closed:
                conn.autocommit = False
    with conn.transaction():
        return store.lookup(conn, prefix, presented)


def list_keys(conn: store.Connection, tenant_id: str) -> list[KeyInfo]:
    with tenant_transaction(tenant_id, conn):
        return store.list_keys(conn, tenant_id)


def revoke_key(conn: store.Connection, tenant_id: str, key_id_or_prefix: str) -> KeyInfo:
    """Revokes one of the tenant's keys by id or prefix; NotFound if the tenant has no such key."""
    with tenant_transaction(tenant_id, conn):
        row = store.revoke(conn, tenant_id, key_id_or_prefix.strip())
    if row is None:
        raise NotFound(f"tenant {tenant_id!r} has no key {key_id_or_prefix!r}", field="key")
    return row
