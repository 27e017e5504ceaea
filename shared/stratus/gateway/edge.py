"""Checks every request passes before any route sees it: text that PostgreSQL and UTF-8 can store.

One dependency for the whole app (create_app's `dependencies=`), so every path parameter, query parameter
and JSON body field of every route is covered, present and future, without per-field code: a NUL or a
lone surrogate is refused with 400 naming the field (`messages.0.content`, `tenant_id`, `after`) before
it reaches a tokenizer, the embedder or a query. It runs before authentication: the answer is the same
for anyone, and nothing is looked up with a string the database would refuse.
"""

from __future__ import annotations

import json
import re

from fastapi import Request

from stratus.gateway import errors
from stratus.validation import find_bad_text

_BODY_METHODS = {"POST", "PUT", "PATCH"}
# A JSON body can carry NUL or a surrogate only as a \u escape (raw control characters and invalid UTF-8
# do not parse): bodies without one, nearly all, are not decoded a second time.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


async def check_text(request: Request) -> None:
    """400 (`invalid_text`) for the first path, query or body string that text_problem refuses."""
    for source in (dict(request.path_params), request.query_params.multi_items()):
        items = source.items() if isinstance(source, dict) else source
        for name, value in items:
            found = find_bad_text(value, (name,)) or find_bad_text(name, (name,))
            if found:
                raise _refuse(*found)
    if request.method not in _BODY_METHODS:
        return
    body = await request.body()  # already read (and cached on the request) by FastAPI
    if not _SUSPECT_ESCAPE.search(body):
        return
    try:
        decoded = json.loads(body)
    except ValueError:
        return  # not JSON: the route's own validation answers
    found = find_bad_text(decoded)
    if found:
        raise _refuse(*found)


def _refuse(where: str, why: str) -> errors.APIError:
    return errors.invalid_request(f"{where or 'body'}: {why}", param=where or None, code="invalid_text")
