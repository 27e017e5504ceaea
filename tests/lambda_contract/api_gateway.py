"""GatewayApi's stage as the contract tier's clients see it: a REST API with one Lambda proxy integration
in response-streaming mode (template.yaml, `responseTransferMode: STREAM`).

For each client request it builds the REST proxy event (payload v1: path without the stage, headers and
multi-value headers, query parameters, requestContext), invokes the gateway's environment, and relays the
streamed answer as API Gateway does: it waits for the JSON prelude and its eight-NUL delimiter, sends the
status line and headers, then each body part as it arrives (chunked). A function error before the prelude
is API Gateway's 502 `{"message": "Internal server error"}`; a timeout, 504. When the client goes away, the
function's stream is cut (RuntimeApi: `on_chunk` returns False).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.lambda_contract.process import FunctionProcess
from tests.lambda_contract.runtime_api import send_json
from tests.lambda_contract.web_adapter import PRELUDE_DELIMITER

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class RestApiStage:
    """http://127.0.0.1:<port>/<stage>/... -> the function's process, streamed back."""

    def __init__(self, function: FunctionProcess, *, stage: str, api_id: str = "contract") -> None:
        self.function = function
        self.stage = stage
        self.api_id = api_id
        self.invoke_timeout_s: float | None = None  # None: the function's Timeout (a test may shorten it)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest-api", daemon=True)

    @property
    def url(self) -> str:
        """The GatewayUrl output: the stage's root, with its trailing slash."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/{self.stage}/"

    def start(self) -> RestApiStage:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def event(self, method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """The REST API proxy event for a request to `target` (the path after the stage)."""
        parsed = urllib.parse.urlsplit(target)
        pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
        multi_query: dict[str, list[str]] = {}
        for key, value in pairs:
            multi_query.setdefault(key, []).append(value)
        path = urllib.parse.unquote(parsed.path) or "/"
        request_id = str(uuid.uuid4())
        return {
            "resource": "/" if path == "/" else "/{proxy+}", "path": path, "httpMethod": method,
            "headers": dict(headers), "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": None if path == "/" else {"proxy": path.lstrip("/")}, "stageVariables": None,
            "requestContext": {
                "accountId": "123456789012", "apiId": self.api_id, "stage": self.stage, "requestId": request_id,
                "resourcePath": "/" if path == "/" else "/{proxy+}", "httpMethod": method,
                "path": f"/{self.stage}{path}", "protocol": "HTTP/1.1", "requestTimeEpoch": int(time.time() * 1000),
                "identity": {"sourceIp": "127.0.0.1", "userAgent": headers.get("User-Agent", "")},
                "domainName": f"{self.api_id}.execute-api.localhost",
            },
            "body": body.decode("utf-8") if body else None, "isBase64Encoded": False,
        }


class _Relay:
    """Writes the function's stream to the client: prelude first, then the body as chunks."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.handler = handler
        self.started = False
        self.client_gone = False
        self._head = b""

    def __call__(self, data: bytes) -> bool:
        try:
            if not self.started:
                self._head += data
                if PRELUDE_DELIMITER not in self._head:
                    return True
                prelude, _, rest = self._head.partition(PRELUDE_DELIMITER)
                self._start(json.loads(prelude))
                data = rest
            if data:
                self.handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.handler.wfile.flush()
            return True
        except OSError:
            self.client_gone = True
            return False

    def _start(self, prelude: dict[str, Any]) -> None:
        h = self.handler
        h.send_response(int(prelude.get("statusCode", 200)))
        for name, value in (prelude.get("headers") or {}).items():
            if name.lower() not in _HOP_BY_HOP:
                h.send_header(name, value)
        for cookie in prelude.get("cookies") or ():
            h.send_header("Set-Cookie", cookie)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        self.started = True

    def finish(self) -> None:
        if self.started and not self.client_gone:
            try:
                self.handler.wfile.write(b"0\r\n\r\n")
                self.handler.wfile.flush()
            except OSError:
                pass


def _handler_for(stage: RestApiStage) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._proxy()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

        def _proxy(self) -> None:
            prefix = f"/{stage.stage}"
            if not (self.path == prefix or self.path.startswith(prefix + "/") or self.path.startswith(prefix + "?")):
                return self._plain(403, {"message": "Missing Authentication Token"})  # API Gateway's answer
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            event = stage.event(self.command, self.path[len(prefix):] or "/", headers, body)
            relay = _Relay(self)
            # With tracing on, API Gateway continues a caller's X-Ray trace and invokes the function in it.
            trace = self.headers.get("X-Amzn-Trace-Id")
            invocation = stage.function.invoke(event, on_chunk=relay, timeout_s=stage.invoke_timeout_s,
                                               trace_header=f"{trace};Sampled=1" if trace and "Sampled" not in trace
                                               else trace)
            if relay.started:
                relay.finish()
            elif invocation.error_type == "Sandbox.Timedout":
                self._plain(504, {"message": "Endpoint request timed out"})
            else:
                self._plain(502, {"message": "Internal server error"})
            self.close_connection = relay.client_gone

        def _plain(self, status: int, body: dict[str, Any]) -> None:
            send_json(self, status, body)

    return Handler
