"""What every `stratus` subcommand shares: the exit codes and the error for bad command-line input.

Exit codes: 0 success; 1 the command ran but something failed (e.g. documents that failed ingestion);
2 bad usage or configuration; 130 interrupted.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input from the command line; the message names the argument."""
