"""Pydantic validation errors as the one-line messages and field names the domain errors carry."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def describe_errors(err: ValidationError, *, empty: str, limit: int | None = None) -> tuple[str, str]:
    """("loc: msg; loc: msg", first field) with locations dotted (`filters.document_ids.0`); `empty` names
    an error about the whole document; `limit` caps how many problems the message lists."""
    errors = err.errors()

    def where(e: ErrorDetails) -> str:
        return ".".join(str(p) for p in e["loc"]) or empty

    problems = "; ".join(f"{where(e)}: {e['msg']}" for e in errors[:limit])
    return problems, where(errors[0])
