"""What every `stratus` subcommand shares: the exit codes and the error for bad command-line input.

Exit codes: 0 success; 1 the command ran but something failed (e.g. documents that failed ingestion);
2 bad usage or configuration; 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input from the command line; the message names the argument."""


def tenant_arg(value: str) -> str:
    """`--tenant` checked as the API checks a tenant id (stratus.tenants)."""
    from stratus.tenants import TENANT_ID, TENANT_ID_PATTERN

    if not TENANT_ID.match(value):
        raise UsageError(f"--tenant: {value!r} must match {TENANT_ID_PATTERN}")
    return value


def run_refusing(command: str, body: Callable[[], None], refusals: tuple[type[Exception], ...]) -> int:
    """Runs a command's body; a refusal (a domain error with a `message`) ends it with exit code 1 and the
    reason on stderr."""
    try:
        body()
    except refusals as err:
        print(f"stratus {command}: {getattr(err, 'message', err)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
