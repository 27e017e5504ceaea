"""Pydantic validation errors as the one-line messages and field names the domain errors carry; the text
and integer limits every edge enforces (what PostgreSQL and UTF-8 can store)."""

from __future__ import annotations

import re

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


# --- text and integers the database can store --------------------------------------------------------
# PostgreSQL refuses NUL in text, and a lone surrogate cannot be encoded as UTF-8 (the driver, tokenizers
# and JSON writers fail on it): both are refused at the edge, before any of them sees the string.
INT4_MAX = 2_147_483_647  # an `integer` column (int4)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "must not contain the NUL character (U+0000)"
    if _LONE_SURROGATE.search(value):
        return "must not contain a lone surrogate (U+D800 to U+DFFF); send valid Unicode"
    return None


def find_bad_text(value: object, path: tuple[str | int, ...] = ()) -> tuple[str, str] | None:
    """The first string (dict keys included) in a decoded JSON value that text_problem refuses, as
    (dotted location, why); None when every string is fine."""
    if isinstance(value, str):
        why = text_problem(value)
        return None if why is None else (".".join(map(str, path)), why)
    if isinstance(value, dict):
        for k, v in value.items():
            where = (*path, k)
            if isinstance(k, str) and (why := text_problem(k)) is not None:
                return ".".join(map(str, where)), f"(a key) {why}"
            found = find_bad_text(v, where)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = find_bad_text(v, (*path, i))
            if found:
                return found
    return None
