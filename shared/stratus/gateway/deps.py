"""FastAPI dependencies shared by every route: the database connection (leased from
stratus.gateway.pool for the request's lifetime), the caller, and scope checks."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, Request

from stratus.gateway import errors
from stratus.gateway.context import context_of
from stratus.gateway.pool import close_idle as close_idle  # re-exported: the local stack closes them via deps
from stratus.gateway.pool import give_back, lease, needs_io_to_give_back, open_or_revalidate, take_idle

if TYPE_CHECKING:
    import psycopg

    from stratus.gateway.keys import Principal


async def db_conn() -> AsyncIterator[psycopg.Connection]:
    """The request's own connection (FastAPI caches it per request: principal and route share it).
    On the event loop when that needs no round trip (a recently used idle connection, handed back idle):
    a worker-thread hop each way costs more than the work; otherwise on a worker thread, as `lease`.

    Driver outage errors raised while it is in use (the key lookup, any route's queries) leave as
    DatabaseUnavailable, so every route answers 503 + retry-after rather than 500; the connection is then
    closed, not pooled."""
    from starlette.concurrency import run_in_threadpool

    from stratus.db.connection import translate_errors

    conn = take_idle()
    if conn is None:
        conn = await run_in_threadpool(open_or_revalidate)
    try:
        with translate_errors(conn):
            yield conn
    finally:
        if needs_io_to_give_back(conn):
            await run_in_threadpool(give_back, conn)
        else:
            give_back(conn)


# /health's database check: kept this long, so load balancers and readiness probes cost at most one
# round trip per process per window.
HEALTH_TTL_S = 2.0
HEALTH_STATEMENT_TIMEOUT_MS = 1000
_health_lock = threading.Lock()
_health: tuple[float, bool] | None = None


def database_ok() -> bool:
    """Whether the database answers `SELECT 1` within a second (a cached answer within HEALTH_TTL_S)."""
    global _health
    with _health_lock:
        now = time.monotonic()
        if _health is not None and now - _health[0] < HEALTH_TTL_S:
            return _health[1]
        _health = (now, _probe())
        return _health[1]


def _probe() -> bool:
    from stratus.db.connection import translate_errors
    from stratus.errors import DatabaseUnavailable

    try:
        with lease() as conn, translate_errors(conn), conn.transaction():
            conn.execute("SELECT set_config('statement_timeout', %s, true)", [str(HEALTH_STATEMENT_TIMEOUT_MS)])
            conn.execute("SELECT 1")
    except DatabaseUnavailable:
        return False
    return True


# Annotated dependencies; the parameter types stay `Any` so FastAPI need not import psycopg or the key
# module when the app is built (cold start).
Conn = Annotated[Any, Depends(db_conn)]


def principal(request: Request, conn: Conn) -> Principal:
    """The authenticated caller; 401 (one message for unknown, malformed and revoked keys) otherwise."""
    from stratus.gateway.keys import authenticate

    ctx = context_of(request)
    # Anthropic's SDK sends its key as x-api-key; OpenAI's as a bearer token.
    api_key = request.headers.get("x-api-key")
    found = authenticate(conn, request.headers.get("authorization") or (f"Bearer {api_key}" if api_key else None))
    if found is None:
        raise errors.invalid_api_key()
    ctx.principal = found
    ctx.trace.update(tenant_id=found.tenant_id, key_prefix=found.key_prefix)
    return found


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold `scope` (403 otherwise). Async: it does no I/O, and a sync
    dependency would cost a worker-thread hop per request."""

    async def dependency(who: Annotated[Any, Depends(principal)]) -> Principal:
        if not who.has(scope):
            raise errors.permission_denied(scope)
        return cast("Principal", who)  # typed Any above so FastAPI need not import the key module

    dependency.__name__ = f"require_{scope}"
    return dependency
