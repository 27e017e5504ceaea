"""The Extensions API (2020-01-01) of the loopback Runtime API (tests/lambda_contract/runtime_api.py), as far
as an internal extension (a thread in the function's process) uses it:

    POST /2020-01-01/extension/register     Lambda-Extension-Name; answers Lambda-Extension-Identifier
    GET  /2020-01-01/extension/event/next   blocks until the next invocation reaches the runtime (INVOKE)

As on Lambda, an invocation is complete only when the runtime has answered and every extension has asked for
its next event: the runtime's next `/next` waits for that, and the invocation records both moments.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

EXTENSION_PREFIX = "/2020-01-01/extension"


@dataclass
class Extension:
    name: str
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    current: Any = None  # the Invocation it has not yet said it is done with


class ExtensionsApi:
    """The environment's registered extensions (RuntimeApi's part of them)."""

    extensions: dict[str, Extension]
    environment: int

    def dispatched(self, invocation: Any) -> None:
        """The runtime got `invocation`: each extension's next event is its INVOKE."""
        for extension in self.extensions.values():
            extension.current = invocation
            extension.events.put({"eventType": "INVOKE", "deadlineMs": invocation.deadline_ms,
                                  "requestId": invocation.request_id,
                                  "invokedFunctionArn": invocation.function_arn,
                                  "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id}})

    def extensions_idle(self) -> bool:
        return all(e.current is None for e in self.extensions.values())

    def wait_for_extensions(self, environment: int) -> bool:
        """Until every extension asked for its next event; False if the environment was reset meanwhile."""
        while not self.extensions_idle():
            if self.environment != environment:
                return False
            time.sleep(0.005)
        return True

    def responded(self, invocation: Any) -> None:
        invocation.responded_at = time.monotonic()
        if self.extensions_idle():
            invocation.completed_at = invocation.responded_at


def extension_call(handler: BaseHTTPRequestHandler, api: ExtensionsApi, body: bytes | None = None) -> None:
    if handler.command == "POST" and handler.path == f"{EXTENSION_PREFIX}/register":
        return register(handler, api)
    if handler.command == "GET" and handler.path == f"{EXTENSION_PREFIX}/event/next":
        return event_next(handler, api)
    return _send(handler, {"errorMessage": f"unknown path {handler.path}", "errorType": "NotFound"}, status=404)


def register(handler: BaseHTTPRequestHandler, api: ExtensionsApi) -> None:
    identifier = str(uuid.uuid4())
    api.extensions[identifier] = Extension(handler.headers.get("Lambda-Extension-Name") or "")
    _send(handler, {"functionName": "", "functionVersion": "$LATEST", "handler": ""},
          {"Lambda-Extension-Identifier": identifier})


def event_next(handler: BaseHTTPRequestHandler, api: ExtensionsApi) -> None:
    """An extension is done with its invocation (which may complete it) and waits for its next event."""
    extension = api.extensions.get(handler.headers.get("Lambda-Extension-Identifier") or "")
    if extension is None:
        return _send(handler, {"errorMessage": "unknown extension", "errorType": "Extension.Unknown"}, status=403)
    finished, extension.current = extension.current, None
    if finished is not None and finished.responded_at is not None and api.extensions_idle():
        finished.completed_at = time.monotonic()
    environment = api.environment
    while True:
        try:
            event = extension.events.get(timeout=0.1)
            break
        except queue.Empty:
            if api.environment != environment:  # the environment was reset: this thread's process is gone
                handler.close_connection = True
                return None
    return _send(handler, event, {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())})


def _send(handler: BaseHTTPRequestHandler, body: dict[str, Any], headers: dict[str, str] | None = None,
          status: int = 200) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)
