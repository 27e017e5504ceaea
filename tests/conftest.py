"""Shared fixtures. Tiers are folders (unit/integration/e2e/infra/lambda_contract); each test gets its
folder's marker."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the Lambda runtime sets per invocation (stratus.lambda_web.TRACE_VARIABLE; not imported here, so that
# collecting the tests imports nothing of the library).
TRACE_VARIABLE = "_X_AMZN_TRACE_ID"
TIERS = ("unit", "integration", "e2e", "infra", "lambda_contract", "fuzz")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(autouse=True)
def _no_invocation_trace_left_behind() -> Iterator[None]:
    """The gateway publishes an invocation's X-Ray trace as _X_AMZN_TRACE_ID, as the Lambda runtime does, and
    a test that calls it in process would leave it set: every later subprocess (a `stratus dev`, say) would
    then continue that one trace. Put back what was there before each test."""
    before = os.environ.get(TRACE_VARIABLE)
    yield
    if before is None:
        os.environ.pop(TRACE_VARIABLE, None)
    else:
        os.environ[TRACE_VARIABLE] = before


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL: DATABASE_URL if set, else an embedded server for this test session."""
    from stratus.db.migrate import migrate
    from stratus_tools.local.stack import EnvOverlay

    url = os.environ.get("DATABASE_URL")
    server = None
    if not url:
        from stratus_tools.local.postgres import start_embedded

        # Inside the project (pgserver opens up the parent folders of its data dir when run as root).
        server = start_embedded(ROOT / ".stratus" / f"test-pg-{os.getpid()}", delete_on_stop=True)
        url = server.url
    migrate(url)
    env = EnvOverlay()  # sets DATABASE_URL and refreshes cached settings; restores both afterwards
    env.set({"DATABASE_URL": url})
    try:
        yield url
    finally:
        from stratus.db.connection import close_connection

        close_connection()
        env.restore()
        if server is not None:
            server.stop()


@pytest.fixture
def db(pg_url: str) -> Iterator[object]:
    """An application connection: logged in as stratus_app (DATABASE_URL's server, the user swapped), RLS
    applies."""
    from stratus.db.connection import connect

    conn = connect(pg_url)
    try:
        yield conn
    finally:
        conn.close()


def create_tenant(url: str, prefix: str = "t") -> str:
    """A fresh tenant row, ready for documents; returns its id."""
    from stratus.db import documents
    from stratus.db.connection import connect, tenant_transaction

    tid = f"{prefix}-{uuid.uuid4().hex[:12]}"
    conn = connect(url)
    try:
        with tenant_transaction(tid, conn):
            documents.ensure_tenant(conn, tid)
    finally:
        conn.close()
    return tid


@pytest.fixture
def new_tenant(pg_url: str) -> Callable[[], str]:
    """Creates another fresh tenant each time it is called (for isolation tests)."""
    return lambda: create_tenant(pg_url)


@pytest.fixture
def tenant_id(pg_url: str) -> str:
    """A fresh tenant, created and ready for documents."""
    return create_tenant(pg_url)


def load_function_app(function: str, module_name: str | None = None) -> ModuleType:
    """A function's `functions/<function>/app.py`, loaded as its own module the way Lambda loads a handler."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(module_name or f"{function}_app",
                                                  root / "functions" / function / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
