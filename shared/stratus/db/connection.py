"""Connections to PostgreSQL (embedded locally, Aurora through RDS Proxy on AWS).

Two logins, never mixed on one connection:
- application connections (`connect()`, `get_connection()`) log in as the application role
  (`stratus_app`, NOSUPERUSER NOBYPASSRLS), to which Row Level Security applies; nothing switches roles,
  so there is no owner session for a `RESET ROLE` to fall back to. Where they go is `app_conninfo()`:
  STRATUS_DATABASE_APP_URL, else RDS Proxy with a fresh IAM auth token (AWS), else DATABASE_URL with the
  user swapped (local).
- the owner (`connect(url, app_role=False)`, `database_url()`): migrations, publishing prompts, local
  set-up. On AWS only the deploy-time migration function has it (the master secret).

Every unit of work runs in `tenant_transaction`, which binds `app.tenant_id` for that transaction only,
and no code sets session state: a transaction pooler (PgBouncer, RDS Proxy) may hand each transaction
to another server connection.

Outages are a domain error: the driver's "cannot reach / lost / cannot write" failures (connection refused,
server closed the connection, admin shutdown, too many connections, read-only after a failover: every
OperationalError) leave this module as `DatabaseUnavailable` (`translate_errors`), which the gateway
answers with 503 + retry-after and the ingest consumer returns to the queue. A kept connection the server
has dropped is noticed before reuse (`reusable`: its socket is readable while idle, no round trip) and
reopened, and a transaction whose connection fails before its first statement is retried once on a new
one, so a warm Lambda survives a failover without a cold start.
"""

from __future__ import annotations

import functools
import json
import logging
import select
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import quote

import psycopg
from pgvector.psycopg import register_vector
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from stratus.config import ConfigError, Settings, get_settings
from stratus.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

APP_ROLE = "stratus_app"  # the default of STRATUS_DATABASE_APP_USER, created by the migrations
# A connection idle longer than this is checked with a round trip before it is reused: RDS Proxy closes
# client connections idle past its IdleClientTimeout, and a frozen Lambda may sleep through that.
REVALIDATE_AFTER_S = 300.0
# A server that does not answer (a blackholed host mid-failover) fails the connect this fast, not after the
# OS's TCP timeout; a URL's own connect_timeout wins.
CONNECT_TIMEOUT_S = 5

_local = threading.local()
_migrated: set[str] = set()
_migrate_lock = threading.Lock()
_last_used: weakref.WeakKeyDictionary[psycopg.Connection, float] = weakref.WeakKeyDictionary()
# The tenant each open tenant_transaction bound, by connection (a connection serves one caller at a time).
_bound: weakref.WeakKeyDictionary[psycopg.Connection, tuple[str, bool]] = weakref.WeakKeyDictionary()
_joined: weakref.WeakKeyDictionary[psycopg.Connection, str] = weakref.WeakKeyDictionary()  # see `joined`


def database_url(settings: Settings | None = None) -> str:
    """The owner's URL (migrations, prompt publishing, local set-up): never for request-path work."""
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


def app_url(url: str, user: str = APP_ROLE) -> str:
    """The same server and database as `url` (a URL or key=value conninfo), logged in as `user`, with
    the password dropped: the owner's password is no password for the application role."""
    params = conninfo_to_dict(url)
    params.pop("password", None)
    params["user"] = user
    return make_conninfo("", **params)


def app_conninfo(url: str | None = None, settings: Settings | None = None) -> str:
    """Where an application connection goes, as the application role.

    `url` given: that server, as the application role (`app_url`). Otherwise the first configured of:
    STRATUS_DATABASE_APP_URL as given; RDS Proxy (STRATUS_DATABASE_PROXY_ENDPOINT) with a new IAM auth
    token, which lasts 15 minutes, so one is made per connection; DATABASE_URL as the application role.
    The master secret is never used here.
    """
    settings = settings or get_settings()
    if url:
        return app_url(url, settings.database_app_user)
    if settings.database_app_url:
        return settings.database_app_url
    if settings.database_proxy_endpoint:
        return _proxy_conninfo(settings)
    if settings.database_url:
        return app_url(settings.database_url, settings.database_app_user)
    raise ConfigError(
        "no application database: set STRATUS_DATABASE_PROXY_ENDPOINT (AWS), STRATUS_DATABASE_APP_URL or "
        "DATABASE_URL (run through the local stack, `stratus dev`)"
    )


def _proxy_conninfo(settings: Settings) -> str:
    from stratus.aws.clients import client  # boto3 only on this path

    host, port, user = settings.database_proxy_endpoint, settings.database_port, settings.database_app_user
    # Signed locally (SigV4 presign with the function's role): no network call.
    token = client("rds").generate_db_auth_token(
        DBHostname=host, Port=port, DBUsername=user, Region=settings.aws_region
    )
    return make_conninfo(host=host, port=port, dbname=settings.database_name, user=user, password=token,
                         sslmode="require", connect_timeout=10)


def connect(url: str | None = None, *, app_role: bool = True) -> psycopg.Connection:
    """Open a connection: as the application role (`app_conninfo(url)`), or with `app_role=False` as the
    owner at `url` (default DATABASE_URL or the master secret) for migrations and local set-up."""
    # prepare_threshold=None: no server-side prepared statements (session state a transaction pooler
    # would lose or pin), and plans depend on per-transaction settings (ef_search, iterative scans).
    if not app_role:
        return psycopg.connect(url or database_url(), prepare_threshold=None, autocommit=False)
    conninfo = app_conninfo(url)
    if "connect_timeout" not in conninfo_to_dict(conninfo):
        conninfo = make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT_S)
    with translate_errors():
        conn = psycopg.connect(conninfo, prepare_threshold=None, autocommit=False)
        try:
            register_vector(conn)  # looks the vector type up (a read in its own transaction)
            conn.commit()
        except BaseException:
            conn.close()
            raise
    _last_used[conn] = time.monotonic()
    return conn


def is_unavailable(err: BaseException) -> bool:
    """Whether `err` says the database cannot serve us now, rather than that a statement is wrong: every
    OperationalError (refused, dropped, admin shutdown, too many connections, statement timeout) and a write
    refused as read-only (a failover's old writer, or a reader behind the writer's name for a moment)."""
    return isinstance(err, psycopg.OperationalError | psycopg.errors.ReadOnlySqlTransaction)


@contextmanager
def translate_errors(conn: psycopg.Connection | None = None) -> Iterator[None]:
    """Re-raises the driver's outage errors as DatabaseUnavailable (the original chained, for the logs).
    A connection that hit one is closed: read-only means it reached a server that is no writer now, and a
    new connection resolves the endpoint again."""
    try:
        yield
    except psycopg.Error as err:
        if not is_unavailable(err):
            raise
        raise _unavailable(err, conn) from err


def _unavailable(err: psycopg.Error, conn: psycopg.Connection | None) -> DatabaseUnavailable:
    if conn is not None and not conn.closed:
        conn.close()
    log.warning("database unavailable: %s: %s", type(err).__name__, str(err).strip()[:300])
    return DatabaseUnavailable(f"the database is unavailable ({type(err).__name__})")


def open_app_connection() -> psycopg.Connection:
    """A new application connection, after applying pending migrations once per process if
    STRATUS_AUTO_MIGRATE is on (local mode; the template turns it off)."""
    with translate_errors():
        _ensure_schema()
    return connect()


def reusable(conn: psycopg.Connection | None) -> bool:
    """Whether a kept connection may serve another unit of work. One idle past REVALIDATE_AFTER_S is
    checked with a round trip (the proxy may have closed it) and closed if that fails."""
    if conn is None or conn.closed:
        return False
    if conn.broken or _dropped(conn):
        conn.close()
        return False
    now = time.monotonic()
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # never touch one in use
    if idle and now - _last_used.get(conn, now) > REVALIDATE_AFTER_S:
        try:
            conn.execute("SELECT 1")
            conn.rollback()
        except psycopg.Error:
            conn.close()
            return False
    _last_used[conn] = now
    return True


def _dropped(conn: psycopg.Connection) -> bool:
    """Whether the server has dropped an idle connection (terminated backend, restart, failover), seen
    without a round trip: an idle connection's socket has nothing to read unless the server sent its FATAL
    error or closed it. Anything readable is read; if the connection still looks fine, a round trip decides
    (a notice, say)."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False  # in use: never touch its socket
    try:
        if not _readable(conn):
            return False
        conn.pgconn.consume_input()
        if conn.pgconn.status != psycopg.pq.ConnStatus.OK:
            return True
        conn.execute("SELECT 1")
        conn.rollback()
    except (OSError, psycopg.Error):
        return True
    return False


def _readable(conn: psycopg.Connection) -> bool:
    """Whether an idle connection's socket has something to read (a poll, no I/O): the server said or
    closed something since the last statement."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def fresh(conn: psycopg.Connection) -> bool:
    """`reusable` without a round trip: True when `conn` may serve at once (open, idle, used within
    REVALIDATE_AFTER_S); False when `reusable` must decide (it may need the server)."""
    if conn.closed or conn.broken or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return False
    try:
        if _readable(conn):  # the server said something: `reusable` decides, off the event loop
            return False
    except OSError:
        return False
    now = time.monotonic()
    if now - _last_used.get(conn, now) > REVALIDATE_AFTER_S:
        return False
    _last_used[conn] = now
    return True


def get_connection() -> psycopg.Connection:
    """A connection reused across invocations of a warm Lambda (one per thread), reopened if broken."""
    return _kept("conn")


def get_side_connection() -> psycopg.Connection:
    """This thread's second kept connection, for work it hands to another thread while it holds its own
    (hybrid retrieval's dense side); reopened if broken, closed with the first by `close_connection`."""
    return _kept("side")


def _kept(slot: str) -> psycopg.Connection:
    conn: psycopg.Connection | None = getattr(_local, slot, None)
    if conn is None or not reusable(conn):
        conn = open_app_connection()
        setattr(_local, slot, conn)
    return conn


def _ensure_schema(url: str | None = None) -> None:
    """Applies pending migrations with the owner's login, once per process, when STRATUS_AUTO_MIGRATE is
    on; concurrent starts serialise on a lock. On AWS migrations run at deploy time instead."""
    settings = get_settings()
    if not settings.auto_migrate:
        return
    url = url or database_url(settings)
    if url in _migrated:
        return
    with _migrate_lock:
        if url not in _migrated:
            from stratus.db.migrate import migrate

            migrate(url)
            _migrated.add(url)


def close_connection() -> None:
    """Closes this thread's kept connections (`get_connection`, `get_side_connection`)."""
    for slot in ("conn", "side"):
        conn: psycopg.Connection | None = getattr(_local, slot, None)
        if conn is not None and not conn.closed:
            conn.close()
        setattr(_local, slot, None)


@contextmanager
def tenant_transaction(tenant_id: str, conn: psycopg.Connection | None = None, *,
                       relaxed: bool = False) -> Iterator[psycopg.Connection]:
    """A transaction in which only `tenant_id`'s rows are visible or writable. `relaxed`: its commit does
    not wait for the WAL flush (`relax_commit`, set in the same statement: no round trip of its own).

    Outages raise DatabaseUnavailable. On the kept connection (`conn` not given), a connection that fails
    before the caller's first statement (the server dropped it while the Lambda was frozen) is replaced and
    the transaction begun once more: nothing of the caller's has run, so nothing can run twice.
    """
    own = conn is None
    conn = conn or get_connection()
    if _joined.get(conn) == tenant_id and conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        yield conn  # inside `joined`: the caller's transaction, already bound to this tenant
        return
    try:
        with ExitStack() as stack:
            for attempt in (1, 2):
                try:
                    ensure_idle(conn)
                    stack.enter_context(conn.transaction())
                    if relaxed:
                        conn.execute("SELECT set_config('app.tenant_id', %s, true), "
                                     "set_config('synchronous_commit', 'off', true)", [tenant_id])
                    else:
                        conn.execute("SELECT set_config('app.tenant_id', %s, true)", [tenant_id])
                    break
                except psycopg.Error as err:
                    if not (own and attempt == 1 and is_unavailable(err) and (conn.closed or conn.broken)):
                        raise
                    stack.pop_all()  # the lost connection's transaction: nothing to roll back
                    log.info("the kept database connection was lost (%s); reconnecting", type(err).__name__)
                    close_connection()
                    conn = get_connection()
            _bound[conn] = (tenant_id, relaxed)
            try:
                yield conn
            finally:
                _bound.pop(conn, None)
    except psycopg.Error as err:
        if not is_unavailable(err):
            raise
        raise _unavailable(err, conn) from err


@contextmanager
def joined(conn: psycopg.Connection, tenant_id: str) -> Iterator[psycopg.Connection]:
    """Inside an open tenant_transaction for `tenant_id`: until the block ends, tenant_transaction for
    the same tenant on `conn` joins it (no transaction of its own, no savepoint: a failure fails the whole
    unit, which the caller then redoes apart), and `relax_commit` leaves its commit synchronous."""
    if bound_in_transaction(conn) != tenant_id:
        raise RuntimeError(f"joined: the connection is not in a tenant transaction for {tenant_id!r}")
    _joined[conn] = tenant_id
    try:
        yield conn
    finally:
        _joined.pop(conn, None)


def bound_in_transaction(conn: psycopg.Connection) -> str | None:
    """The tenant the open `tenant_transaction` on `conn` bound (known without asking the server), or
    None when `conn` is not inside one."""
    found = _bound.get(conn)
    return found[0] if found is not None else None


def ensure_idle(conn: psycopg.Connection) -> None:
    """Roll back a transaction a failed statement left open, so the connection can be used again."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()


def relax_commit(conn: psycopg.Connection) -> None:
    """This transaction's commit does not wait for the WAL flush: for records (traces, generation rows,
    cache entries, rate counters) whose last few a database crash may lose; never for documents or keys."""
    found = _bound.get(conn)
    if found is not None and found[1]:
        return  # the tenant_transaction was opened relaxed
    if conn in _joined:
        return  # a record joining a unit that must wait for the flush (a settlement): it waits too
    conn.execute("SELECT set_config('synchronous_commit', 'off', true)")
