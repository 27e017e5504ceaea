"""`stratus dev`: the local stack serving the gateway over HTTP until it is told to stop.

Once the gateway answers, stdout gets exactly two lines a shell (or a `.env` file) can take as they are:

    STRATUS_BASE_URL=http://127.0.0.1:8080/v1
    STRATUS_API_KEY=sk-stratus-...

Everything else goes to stderr (or the log file), so `eval "$(stratus dev | head -2)"`-style use and
scripts reading stdout see only those lines. SIGINT or SIGTERM stops the gateway, the pollers, moto
and PostgreSQL; being stopped is how this command normally ends, so that exits 0.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from stratus.config import get_settings
from stratus_tools.local.commands import DEMO_TENANT, Target, function_output, ingest_into

DEFAULT_PORT = 8080
KEY_NAME = "stratus dev"


def run_dev(*, port: int = DEFAULT_PORT, tenant_id: str = DEMO_TENANT, corpus: Path | None = None,
            timeout: float = 600, verbose: bool = False) -> int:
    from stratus_tools.local.stack import LocalStack

    settings = get_settings()
    with function_output(settings, verbose) as out, _stdout_to_stderr(verbose):
        stack = LocalStack(settings, serve_gateway=True, gateway_port=port)
        try:
            stack.start()
            _say(f"local stack up: moto at {stack.endpoint_url}, gateway at {stack.gateway_url}")
            if corpus is not None:
                target = Target(stack.client("s3"), stack.documents_bucket, "local stack",
                                idle=lambda: all(p.idle() for p in stack.pollers))
                report = ingest_into(target, corpus, tenant_id, "", timeout=timeout, out=sys.stderr)
                _say("\n".join(report.lines()))
            key = create_dev_key(tenant_id)
            _check_health(stack.gateway_url)
            print_exports(out, stack.gateway_url, key)
            logs = "stderr" if verbose else settings.data_dir / "logs" / "local.log"
            _say(f"serving tenant {tenant_id!r} at {stack.gateway_url}/v1 (Ctrl-C to stop; logs: {logs})")
            return _serve(stack)
        finally:
            # A second Ctrl-C must not cut the shutdown half-way and leave PostgreSQL running.
            with _signals_held():
                stack.stop()


def _serve(stack: Any) -> int:
    """0 once SIGINT or SIGTERM arrives (the cli turns SIGTERM into KeyboardInterrupt); 1 if the
    server stops by itself."""
    try:
        while stack.gateway.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        _say("stopping: gateway, pollers, moto, PostgreSQL")
        return 0
    _say("the gateway server stopped on its own; stopping the stack")
    return 1


def create_dev_key(tenant_id: str, key_name: str = KEY_NAME) -> str:
    """Ensure the tenant exists and return a fresh key for it (inference and documents scopes)."""
    from stratus.db.connection import get_connection
    from stratus.gateway.keys import DEFAULT_SCOPES, create_key
    from stratus.gateway.tenancy import create_tenant

    conn = get_connection()
    create_tenant(conn, tenant_id)  # an existing tenant (a reused data folder) is kept as it is
    plaintext, _ = create_key(conn, tenant_id, name=key_name, scopes=DEFAULT_SCOPES)
    return plaintext


def print_exports(out: TextIO, gateway_url: str, api_key: str) -> None:
    out.write(f"STRATUS_BASE_URL={gateway_url}/v1\nSTRATUS_API_KEY={api_key}\n")
    out.flush()


def _check_health(gateway_url: str) -> None:
    """The lines are printed only once the app answers over HTTP, not merely once the port is bound."""
    with urllib.request.urlopen(f"{gateway_url}/health", timeout=10) as response:  # noqa: S310 - loopback
        if response.status != 200:
            raise RuntimeError(f"{gateway_url}/health answered {response.status}")


@contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """With --verbose the functions' logs (written to stdout, as on Lambda) go to stderr, so stdout keeps
    only the two lines (function_output already sends them to the log file otherwise)."""
    if not active:
        yield
        return
    terminal, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout = terminal


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM for the block (signal handlers belong to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
