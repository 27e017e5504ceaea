"""Domain errors. Adapters translate driver and AWS errors into these; edges map them once."""

from __future__ import annotations


class StratusError(Exception):
    """Base class; `code` is stable and machine-readable."""

    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(StratusError):
    code = "invalid_input"


class NotFound(StratusError):
    code = "not_found"


class Forbidden(StratusError):
    code = "forbidden"


class Unsupported(StratusError):
    """Input of a kind we do not handle (e.g. an unknown file type)."""

    code = "unsupported"


class TooLarge(StratusError):
    code = "too_large"


class ExtractionFailed(StratusError):
    """A document could not be read (corrupt PDF, no text)."""

    code = "extraction_failed"


class TransientError(StratusError):
    """Worth retrying: a dependency was unavailable. Batch consumers let these go back to the queue."""

    code = "transient"


class DatabaseUnavailable(TransientError):
    """The database cannot be reached or cannot take writes: refused, dropped, shut down, out of connection
    slots, or read-only mid-failover. `retry_after` is the seconds worth waiting (the gateway's retry-after)."""

    code = "database_unavailable"
    retry_after = 2.0
