"""Server-sent events as OpenAI streams them: `data: <json>\\n\\n` per chunk, `data: [DONE]` at the end.

A failure after the first byte cannot change the status line any more; it is sent as an event
`data: {"error": {...}}` and the stream ends WITHOUT [DONE], which the official SDKs raise as an
APIError (a client must never mistake a cut answer for a complete one).
"""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
# Proxies must not buffer or transform the stream; the connection carries one response.
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def error_event(body: dict[str, Any]) -> bytes:
    """`body` is an APIError body ({"error": {...}})."""
    return event(body)
