"""Server-sent events as OpenAI streams them: `data: <json>\\n\\n` per chunk, `data: [DONE]` at the end.

A failure after the first byte cannot change the status line any more; it is sent as an event
`data: {"error": {...}}` and the stream ends WITHOUT [DONE], which the official SDKs raise as an
APIError (a client must never mistake a cut answer for a complete one).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from typing import Any

import anyio
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
# Proxies must not buffer or transform the stream; the connection carries one response.
HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def chunks(events: Iterable[bytes]) -> Generator[dict[str, Any], None, None]:
    """The objects of an event stream as `event` writes them, [DONE] left out: what another API's stream is
    translated from. Closing this generator closes `events` (a client that left that stream stops the
    answer beneath it, and its provider stream)."""
    try:
        for frame in events:
            payload = frame.removeprefix(b"data: ").strip()
            if payload != b"[DONE]":
                yield json.loads(payload)
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def error_event(body: dict[str, Any]) -> bytes:
    """`body` is an APIError body ({"error": {...}})."""
    return event(body)


class EventStream(StreamingResponse):
    """An event stream produced by a plain generator, each step in the thread pool.

    When the client leaves before the end, the generator is closed (GeneratorExit at the yield it waits
    at, once a step under way has finished) before the background task runs: what the generator does on
    its way out (stop the provider's stream, mark the trace) is done when the request is settled and
    traced. The background task runs however the response ended.
    """

    def __init__(self, events: Generator[bytes, None, None], *, background: BackgroundTask | None = None) -> None:
        self._events = events
        self._lock = threading.Lock()  # one step at a time; close() waits for a step under way
        self._complete = False
        super().__init__(self._pump(), media_type=MEDIA_TYPE, headers=HEADERS, background=background)

    async def _pump(self) -> AsyncIterator[bytes]:
        while (data := await anyio.to_thread.run_sync(self._step)) is not None:
            yield data

    def translated(self, translate: Callable[[Generator[bytes, None, None]], Generator[bytes, None, None]]
                   ) -> EventStream:
        """The same answer in another API's events (this response is not sent; its task goes with the new one)."""
        return EventStream(translate(self._events), background=self.background)

    def _step(self) -> bytes | None:
        with self._lock:
            return next(self._events, None)

    def _close(self) -> None:
        with self._lock:
            self._events.close()

    async def stream_response(self, send: Send) -> None:
        await super().stream_response(send)
        self._complete = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        background, self.background = self.background, None
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self._complete:
                await anyio.to_thread.run_sync(self._close)
            if background is not None:
                await background()
