"""Flush the invocation's spans after its result has gone back: an internal Lambda extension.

A plain (non-streaming) handler cannot answer first and work after: the runtime posts its result when it
returns, and Lambda may freeze the process right then. But Lambda waits for every registered extension to
ask for its next event before it ends the invocation, and an internal extension is just a thread of the
function's own process that registers with the Extensions API during init. So:

    handler returns -> Observability.handler calls `handler_done()` -> the runtime posts the result
                    -> this thread, woken, flushes the batch (in parallel) -> GET /extension/event/next

The caller (Step Functions, the SQS poller) has the result while the spans are still being exported; the
flush is billed duration, not latency. The thread never raises: any failure of its own (an unreachable API, an
error reply, a failed flush) logs, pauses briefly when the API failed, and asks for the next event again,
because an extension that stops asking would hold every invocation until its timeout. If the
registration fails, `start` returns None and the handler flushes before returning, as before.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

NAME = "stratus-telemetry"
API = "/2020-01-01/extension"
FIRST_PAUSE_S, MAX_PAUSE_S = 0.05, 1.0  # between failed /event/next calls


class FlushAfterResponse:
    def __init__(self, runtime_api: str, flush: Callable[[], bool]) -> None:
        self.runtime_api = runtime_api
        self.flush = flush
        self.identifier = ""
        self._done = threading.Event()  # the current invocation's handler has returned
        self._thread = threading.Thread(target=self._run, name=NAME, daemon=True)

    def register(self) -> bool:
        try:
            status, headers, _ = self._call("POST", f"{API}/register", {"events": ["INVOKE"]},
                                            {"Lambda-Extension-Name": NAME})
        except (OSError, ValueError):
            log.warning("registering the %s extension failed: spans flush before the result", NAME, exc_info=True)
            return False
        self.identifier = headers.get("lambda-extension-identifier", "")
        if status != 200 or not self.identifier:
            log.warning("the Extensions API refused %s (%s): spans flush before the result", NAME, status)
            return False
        self._thread.start()
        return True

    def handler_done(self) -> None:
        """The invocation's handler returned (or raised): its spans are all queued."""
        self._done.set()

    def _run(self) -> None:
        pause = 0.0
        while True:
            try:
                status, _, event = self._call("GET", f"{API}/event/next", None,
                                              {"Lambda-Extension-Identifier": self.identifier})
            except (OSError, ValueError):
                log.warning("the %s extension lost the Extensions API", NAME, exc_info=True)
                pause = _wait(pause)
                continue
            if status != 200:  # an error reply carries no event: ask again, without spinning
                log.warning("the Extensions API answered %s to the %s extension's /event/next", status, NAME)
                pause = _wait(pause)
                continue
            pause = 0.0
            kind = event.get("eventType")
            if kind == "SHUTDOWN":  # not subscribed today; if it comes, whatever is left goes now
                self._flush()
                return
            if kind != "INVOKE":
                log.warning("the %s extension ignored an event of type %r", NAME, kind)
                continue
            deadline_s = float(event.get("deadlineMs") or 0) / 1000 - time.time()
            self._done.wait(timeout=max(0.0, deadline_s))  # past the deadline Lambda ends the environment
            self._done.clear()
            self._flush()

    def _flush(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the extension must keep asking for events
            log.warning("flushing spans after the response failed", exc_info=True)

    def _call(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        connection = http.client.HTTPConnection(self.runtime_api, timeout=None)  # /event/next blocks
        try:
            data = json.dumps(body).encode() if body is not None else None
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    json.loads(raw) if raw else {})
        finally:
            connection.close()


def _wait(previous: float) -> float:
    """Sleeps before asking the Extensions API again: 50 ms, doubling up to 1 s while it keeps failing."""
    pause = min(MAX_PAUSE_S, previous * 2 if previous else FIRST_PAUSE_S)
    time.sleep(pause)
    return pause


def start(runtime_api: str, flush: Callable[[], bool]) -> FlushAfterResponse | None:
    """Registers the extension (call during init, before the runtime's first /next); None if Lambda refused."""
    extension = FlushAfterResponse(runtime_api, flush)
    return extension if extension.register() else None
