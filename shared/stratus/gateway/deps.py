"""FastAPI dependencies shared by every route: the database connection (leased from
stratus.gateway.pool for the request's lifetime), the caller, and scope checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, Request

from stratus.gateway import errors
from stratus.gateway.context import context_of
from stratus.gateway.pool import close_idle as close_idle  # re-exported: the local stack closes them via deps
from stratus.gateway.pool import lease

if TYPE_CHECKING:
    import psycopg

    from stratus.gateway.keys import Principal


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
        return cast("Principal", who)  # typed Any above so FastAPI need not import the key module

    dependency.__name__ = f"require_{scope}"
    return dependency
