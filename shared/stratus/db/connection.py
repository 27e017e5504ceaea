"""Connections to PostgreSQL (embedded locally, Aurora on AWS).

Application connections switch to the `stratus_app` role, to which Row Level Security applies, and
every unit of work runs in `tenant_transaction`, which binds `app.tenant_id` for that transaction only.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
from pgvector.psycopg import register_vector

from stratus.config import ConfigError, Settings, get_settings

APP_ROLE = "stratus_app"

_local = threading.local()
_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def database_url(settings: Settings | None = None) -> str:
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    if settings.database_secret_arn:
        return _url_from_secret(settings.database_secret_arn, settings.database_name)
    raise ConfigError(
        "DATABASE_URL is not set: run through the local stack (`stratus dev`) or point it at PostgreSQL"
    )


@functools.cache
def _url_from_secret(secret_arn: str, database_name: str) -> str:
    """Read once per container: every connection and cold-start task asks for the URL."""
    from stratus.aws.clients import client  # boto3 only on this path

    secret = json.loads(client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    dbname = secret.get("dbname") or database_name
    return f"postgresql://{user}:{password}@{secret['host']}:{secret.get('port', 5432)}/{dbname}?sslmode=require"


def connect(url: str | None = None, *, app_role: bool = True) -> psycopg.Connection:
    """Open a connection. `app_role=False` keeps the login role (migrations, local set-up)."""
    # prepare_threshold=None: plans depend on per-transaction settings (ef_search, iterative scans).
    conn = psycopg.connect(url or database_url(), prepare_threshold=None, autocommit=False)
    if app_role:
        conn.execute(f"SET ROLE {APP_ROLE}")
        register_vector(conn)
        conn.commit()
    return conn


def get_connection() -> psycopg.Connection:
    """A connection reused across invocations of a warm Lambda (one per thread), reopened if broken."""
    conn: psycopg.Connection | None = getattr(_local, "conn", None)
    if conn is None or conn.closed or conn.broken:
        url = database_url()
        _ensure_schema(url)
        conn = connect(url)
        _local.conn = conn
    return conn


def _ensure_schema(url: str) -> None:
    """Cold starts apply pending migrations (once per process); concurrent starts serialise on a lock."""
    if url in _migrated or not get_settings().auto_migrate:
        return
    with _migrate_lock:
        if url not in _migrated:
            from stratus.db.migrate import migrate

            migrate(url)
            _migrated.add(url)


def close_connection() -> None:
    conn: psycopg.Connection | None = getattr(_local, "conn", None)
    if conn is not None and not conn.closed:
        conn.close()
    _local.conn = None


@contextmanager
def tenant_transaction(tenant_id: str, conn: psycopg.Connection | None = None) -> Iterator[psycopg.Connection]:
    """A transaction in which only `tenant_id`'s rows are visible or writable."""
    conn = conn or get_connection()
    ensure_idle(conn)
    with conn.transaction():
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", [tenant_id])
        yield conn


def ensure_idle(conn: psycopg.Connection) -> None:
    """Roll back a transaction a failed statement left open, so the connection can be used again."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()


def relax_commit(conn: psycopg.Connection) -> None:
    """This transaction's commit does not wait for the WAL flush: for records (traces, generation rows,
    cache entries, rate counters) whose last few a database crash may lose; never for documents or keys."""
    conn.execute("SELECT set_config('synchronous_commit', 'off', true)")
