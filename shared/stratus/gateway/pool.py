"""The gateway's database connections: each request, background task and stream leases its own.

Sync dependencies and routes run on a thread pool, and one request's dependency and body may run on
different threads, so a per-thread connection could be shared by two requests at once (and with it the
transaction that binds the tenant). Each request therefore leases a connection of its own for its
lifetime and hands it back afterwards (`lease`); background work and streamed responses lease their own
when they need one. Imports nothing of the gateway, so deps and context can both use it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

_idle: list[psycopg.Connection] = []
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
    if conn is None or not reusable(conn):
        conn = open_app_connection()  # as stratus_app; locally a cold start migrates first
    try:
        yield conn
    finally:
        _give_back(conn)


def take_idle() -> psycopg.Connection | None:
    """An idle connection that needs no round trip to be trusted (used recently, not broken), or None:
    the event loop's fast path (`acquire`), which must not block on the network."""
    from stratus.db.connection import fresh

    with _idle_lock:
        conn = _idle.pop() if _idle else None
    if conn is None:
        return None
    if fresh(conn):
        return conn
    _give_back(conn)  # idle no longer than the pool keeps it either way; `lease` revalidates it
    return None


def open_or_revalidate() -> psycopg.Connection:
    """The slow path of `acquire` (run on a worker thread): an idle connection checked with a round
    trip, or a new one."""
    from stratus.db.connection import open_app_connection, reusable

    with _idle_lock:
        conn = _idle.pop() if _idle else None
    if conn is None or not reusable(conn):
        conn = open_app_connection()
    return conn


def needs_io_to_give_back(conn: psycopg.Connection) -> bool:
    """Whether handing `conn` back talks to the server (a rollback, or a close past _MAX_IDLE)."""
    if conn.closed or conn.broken:
        return False
    return conn.info.transaction_status != 0 or len(_idle) >= _MAX_IDLE


def give_back(conn: psycopg.Connection) -> None:
    _give_back(conn)


def _give_back(conn: psycopg.Connection) -> None:
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
