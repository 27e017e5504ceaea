"""A loopback implementation of the Lambda Runtime API (2018-06-01), for one execution environment.

No registry package ships an emulator of it (AWS's own is a Go binary), so this is the smallest server
that speaks the documented protocol to the real Runtime Interface Client:

    GET  /2018-06-01/runtime/invocation/next           blocks until an event, then answers it with the
                                                       Lambda-Runtime-* headers (request id, deadline,
                                                       function ARN, trace id, client context, identity)
    POST /2018-06-01/runtime/invocation/<id>/response  the result (buffered, or streamed: chunked body,
                                                       Lambda-Runtime-Function-Response-Mode: streaming,
                                                       errors in the HTTP trailers)
    POST /2018-06-01/runtime/invocation/<id>/error     a handler error (Lambda-Runtime-Function-Error-Type)
    POST /2018-06-01/runtime/init/error                the handler could not be loaded
    GET  /2018-06-01/runtime/restore/next              a SnapStart environment's init is done (Lambda would
                                                       snapshot it here); answered at once, as a restore, after
                                                       which the RIC runs the after-restore hooks
    POST /2018-06-01/runtime/restore/error             an after-restore hook failed

As on Lambda, `/next` never answers with an error: it blocks (the RIC's native client crashes on
anything unexpected there). The server hands out one event at a time and records when each part of a
streamed response arrived, so a test can see the first bytes leave before the last.
The Extensions API (an internal extension's registration and events) is in extensions_api.py.
"""

from __future__ import annotations

import json
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.lambda_contract.extensions_api import EXTENSION_PREFIX, ExtensionsApi, extension_call

PREFIX = "/2018-06-01/runtime"
_INVOCATION = re.compile(rf"^{PREFIX}/invocation/([^/]+)/(response|error)$")


@dataclass
class Invocation:
    """One event and, once the function answered, its outcome."""

    event: Any
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    trace_id: str = field(default_factory=lambda: new_trace_header())
    deadline_ms: int = 0
    function_arn: str = ""
    client_context: str = ""
    # Outcome.
    done: threading.Event = field(default_factory=threading.Event)
    body: bytes = b""
    error_type: str | None = None  # Lambda-Runtime-Function-Error-Type (or a platform error)
    streamed: bool = False
    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (monotonic arrival, bytes)
    trailers: dict[str, str] = field(default_factory=dict)
    responded_at: float | None = None  # monotonic: the runtime posted the response (or error)
    completed_at: float | None = None  # monotonic: every extension asked for its next event after it
    # Streaming: called with each part as it arrives; False means the caller has gone (API Gateway closed
    # the client's connection), and the function's stream is cut as Lambda cuts it.
    on_chunk: Callable[[bytes], bool] | None = None

    @property
    def payload(self) -> Any:
        return json.loads(self.body) if self.body else None


def new_trace_header() -> str:
    """An X-Ray trace header as Lambda passes it: Root=1-<epoch hex>-<96-bit id>;Parent=<64-bit>;Sampled=1."""
    return (f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
            f"Parent={uuid.uuid4().hex[:16]};Sampled=1")


class RuntimeApi(ExtensionsApi):
    """The Runtime API of one environment; `invoke` queues an event and waits for its outcome."""

    def __init__(self) -> None:
        self._events: queue.Queue[Invocation] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.init_error: dict[str, Any] | None = None
        self.init_error_type: str | None = None
        self.first_next_at: float | None = None  # monotonic: the environment finished its init
        self.snapshot_at: float | None = None  # monotonic: a SnapStart init asked to be snapshotted
        self.restore_error: dict[str, Any] | None = None
        self.environment = 0  # bumped by reset(): a /next left waiting by a killed environment gives up
        self.extensions = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="runtime-api", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> RuntimeApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()

    def submit(self, invocation: Invocation) -> Invocation:
        self.invocations[invocation.request_id] = invocation
        self._events.put(invocation)
        return invocation

    def reset(self) -> None:
        """A new environment (after a timeout or crash): pending events are dropped, init is measured again."""
        self.environment += 1
        while not self._events.empty():
            self._events.get_nowait()
        self.first_next_at = None
        self.snapshot_at = None
        self.restore_error = None
        self.init_error = None
        self.init_error_type = None
        self.extensions = {}



def _handler_for(api: RuntimeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # the RIC keeps its connection alive between calls

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.startswith(EXTENSION_PREFIX):
                return extension_call(self, api)
            if self.path == f"{PREFIX}/restore/next":
                api.snapshot_at = time.monotonic()
                return self._answer(200, {})
            if self.path != f"{PREFIX}/invocation/next":
                return self._answer(404, {"errorMessage": f"unknown path {self.path}", "errorType": "NotFound"})
            if api.first_next_at is None:
                api.first_next_at = time.monotonic()
            invocation = self._next_event()
            if invocation is None:
                self.close_connection = True  # its environment is gone; the event waits for the new one
                return
            api.dispatched(invocation)
            body = json.dumps(invocation.event).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Lambda-Runtime-Aws-Request-Id", invocation.request_id)
            self.send_header("Lambda-Runtime-Deadline-Ms", str(invocation.deadline_ms))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", invocation.function_arn)
            self.send_header("Lambda-Runtime-Trace-Id", invocation.trace_id)
            self.send_header("Lambda-Runtime-Client-Context", invocation.client_context)
            self.send_header("Lambda-Runtime-Cognito-Identity", "")
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802
            if self.path.startswith(EXTENSION_PREFIX):
                return extension_call(self, api, self._read_body())
            if self.path == f"{PREFIX}/init/error":
                api.init_error = _json(self._read_body())
                api.init_error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
                return self._answer(202, {"status": "OK"})
            if self.path == f"{PREFIX}/restore/error":
                api.restore_error = _json(self._read_body())
                return self._answer(202, {"status": "OK"})
            match = _INVOCATION.match(self.path)
            invocation = api.invocations.get(match.group(1)) if match else None
            if invocation is None:
                return self._answer(400 if match else 404, {"errorMessage": f"unknown request {self.path}",
                                                            "errorType": "InvalidRequestID"})
            if invocation.done.is_set():
                return self._answer(400, {"errorMessage": "the invocation already has an outcome",
                                          "errorType": "InvalidStateTransition"})
            if match.group(2) == "error":
                invocation.body = self._read_body()
                invocation.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") or "Unhandled"
            elif self.headers.get("Lambda-Runtime-Function-Response-Mode", "").lower() == "streaming":
                invocation.streamed = True
                self._read_stream(invocation)
                error = invocation.trailers.get("lambda-runtime-function-error-type")
                if error:  # a stream that failed part-way reports it in the trailers
                    invocation.error_type = error
                if invocation.error_type == "Client.Disconnected":
                    invocation.done.set()
                    return
            else:
                invocation.body = self._read_body()
            api.responded(invocation)
            invocation.done.set()
            self._answer(202, {"status": "OK"})

        def _next_event(self) -> Invocation | None:
            """Blocks, as Lambda does, until there is an event, unless this environment ends meanwhile."""
            environment = api.environment
            if not api.wait_for_extensions(environment):  # the last invocation is complete only then
                return None
            while True:
                try:
                    invocation = api._events.get(timeout=0.1)
                except queue.Empty:
                    if api.environment != environment:
                        return None
                    continue
                if api.environment != environment:
                    api._events.put(invocation)
                    return None
                return invocation

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return b"".join(chunk for chunk in self._chunks({}))
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _read_stream(self, invocation: Invocation) -> None:
            for chunk in self._chunks(invocation.trailers):
                invocation.chunks.append((time.monotonic(), chunk))
                if invocation.on_chunk is not None and not invocation.on_chunk(chunk):
                    # The client left: the function's writes fail from here on, as on Lambda.
                    invocation.error_type = "Client.Disconnected"
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    break
            invocation.body = b"".join(chunk for _, chunk in invocation.chunks)

        def _chunks(self, trailers: dict[str, str]) -> Any:
            """HTTP/1.1 chunked transfer coding (RFC 9112 §7.1), trailer fields collected lower-cased."""
            while True:
                size_line = self.rfile.readline(65537).split(b";", 1)[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    break
                data = self.rfile.read(size)
                self.rfile.readline()  # the CRLF after the chunk
                yield data
            while True:
                line = self.rfile.readline(65537).strip()
                if not line:
                    return
                name, _, value = line.decode("latin-1").partition(":")
                trailers[name.strip().lower()] = value.strip()

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            send_json(self, status, body)

    return Handler


def send_json(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    """A complete JSON answer on a keep-alive connection (what both loopback servers of the tier send)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return {"raw": data.decode("utf-8", "replace")}
