"""FastAPI dependencies shared by every route: the database connection, the caller, and scope checks.

Connections: sync dependencies and routes run on a thread pool, and one request's dependency and
body may run on different threads, so a per-thread connection could be shared by two requests at
once (and with it the transaction that binds the tenant). Each request therefore leases a connection
of its own for its lifetime and hands it back afterwards (`lease`); background work and streamed
responses lease their own when they need one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from stratus.gateway import errors
from stratus.gateway.context import context_of

if TYPE_CHECKING:
    import psycopg

    from stratus.gateway.keys import Principal

_idle: list[Any] = []
_idle_lock = threading.Lock()
# A warm Lambda serves one request at a time; local serving under load needs one per worker thread and
# after-response task (closing and reopening one costs a connect and the vector type lookup).
_MAX_IDLE = 48


@contextmanager
def lease() -> Iterator[psycopg.Connection]:
    """An app-role connection used by this caller alone until the block ends."""
    from stratus.db.connection import open_app_connection, reusable

    with _idle_lock:
        conn = _idle.pop() if _idle else None
    if not reusable(conn):
        conn = open_app_connection()  # as stratus_app; locally a cold start migrates first
    try:
        yield conn
    finally:
        _give_back(conn)


def _give_back(conn: Any) -> None:
    if conn.closed or conn.broken:
        return
    if conn.info.transaction_status != 0:  # not idle: never hand on an open transaction (tenant binding)
        conn.rollback()
    with _idle_lock:
        if len(_idle) < _MAX_IDLE:
            _idle.append(conn)
            return
    conn.close()


def close_idle() -> None:
    """Close the idle connections (the local stack stops its database; tests start another)."""
    with _idle_lock:
        idle, _idle[:] = list(_idle), []
    for conn in idle:
        conn.close()


def db_conn() -> Iterator[psycopg.Connection]:
    """The request's own connection (FastAPI caches it per request: principal and route share it)."""
    with lease() as conn:
        yield conn


# Annotated dependencies; the parameter types stay `Any` so FastAPI need not import psycopg or the key
# module when the app is built (cold start).
Conn = Annotated[Any, Depends(db_conn)]


def principal(request: Request, conn: Conn) -> Principal:
    """The authenticated caller; 401 (one message for unknown, malformed and revoked keys) otherwise."""
    from stratus.gateway.keys import authenticate

    ctx = context_of(request)
    found = authenticate(conn, request.headers.get("authorization"))
    if found is None:
        raise errors.invalid_api_key()
    ctx.principal = found
    ctx.trace.update(tenant_id=found.tenant_id, key_prefix=found.key_prefix)
    return found


def require(scope: str) -> Callable[..., Principal]:
    """A dependency: the caller, who must hold `scope` (403 otherwise)."""

    def dependency(who: Annotated[Any, Depends(principal)]) -> Principal:
        if not who.has(scope):
            raise errors.permission_denied(scope)
        return who

    dependency.__name__ = f"require_{scope}"
    return dependency
