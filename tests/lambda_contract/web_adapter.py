"""What the AWS Lambda Web Adapter does inside the gateway's execution environment, for the contract tier.

The adapter is a Rust binary that AWS ships as a public layer (LambdaAdapterLayerArm64); no registry
this project installs from carries it, so the tier plays its documented part here, and only that part:

- wait until the app answers its readiness check (AWS_LWA_READINESS_CHECK_PATH on AWS_LWA_PORT, every
  10 ms, any status from 100 to 499), and only then ask the Runtime API for the first event: the time
  until then is the environment's init;
- turn each API Gateway event (REST v1 or HTTP v2) into an HTTP/1.1 request to the app, adding the
  `x-amzn-request-context` and `x-amzn-lambda-context` headers (JSON);
- with AWS_LWA_INVOKE_MODE=response_stream, answer through the Runtime API's streaming mode: a JSON
  prelude (status, headers, cookies), eight NUL bytes, then the app's body as it arrives; when the
  Runtime API stops taking the stream (the client left), close the connection to the app.

What the app, run.sh and uvicorn do is the deployed code, unchanged.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

PRELUDE_DELIMITER = b"\0" * 8
CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
_RUNTIME = "/2018-06-01/runtime"


class WebAdapter:
    """One environment's adapter: a thread that polls the Runtime API at `runtime_api` and forwards to
    the app on `port` of this machine."""

    def __init__(self, runtime_api: str, *, port: int, readiness_path: str, function: dict[str, str],
                 streaming: bool = True) -> None:
        self.runtime_api = runtime_api
        self.port = port
        self.readiness_path = readiness_path
        self.function = function  # function_name, memory, version, log_group, log_stream
        self.streaming = streaming
        self._stopped = threading.Event()
        self._next: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name=f"web-adapter:{port}", daemon=True)

    def start(self) -> WebAdapter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._next is not None and self._next.sock is not None:
            self._next.sock.close()  # unblocks a waiting /next
        self._thread.join(timeout=5)

    # --- the loop -----------------------------------------------------------------------------------
    def _run(self) -> None:
        if not self._wait_until_ready():
            return
        host, port = self.runtime_api.split(":")
        while not self._stopped.is_set():
            self._next = http.client.HTTPConnection(host, int(port))
            try:
                self._next.request("GET", f"{_RUNTIME}/invocation/next")
                answer = self._next.getresponse()
                event = json.loads(answer.read())
                headers = {k.lower(): v for k, v in answer.getheaders()}
            except (OSError, http.client.HTTPException, ValueError):
                return  # the environment is being torn down
            finally:
                self._next.close()
            self._invoke(event, headers)

    def _wait_until_ready(self) -> bool:
        while not self._stopped.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            try:
                conn.request("GET", self.readiness_path)
                if 100 <= conn.getresponse().status < 500:
                    return True
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            time.sleep(0.01)
        return False

    def _invoke(self, event: dict[str, Any], runtime_headers: dict[str, str]) -> None:
        request_id = runtime_headers["lambda-runtime-aws-request-id"]
        method, target, headers, body = http_request(event)
        headers.setdefault("host", f"127.0.0.1:{self.port}")
        headers["x-amzn-request-context"] = json.dumps(event.get("requestContext") or {})
        headers["x-amzn-lambda-context"] = json.dumps(self._lambda_context(request_id, runtime_headers))
        app = http.client.HTTPConnection("127.0.0.1", self.port)
        try:
            app.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                app.putheader(name, value)
            if "content-length" not in headers:
                app.putheader("content-length", str(len(body)))
            app.endheaders(body)
            response = app.getresponse()
            self._respond(request_id, response)
        except (OSError, http.client.HTTPException) as err:
            self._post(f"{_RUNTIME}/invocation/{request_id}/error",
                       json.dumps({"errorMessage": f"the app did not answer: {err}", "errorType": "AppError"}).encode(),
                       {"Lambda-Runtime-Function-Error-Type": "AppError"})
        finally:
            app.close()  # mid-stream too: the app sees its client leave

    def _lambda_context(self, request_id: str, headers: dict[str, str]) -> dict[str, Any]:
        return {"request_id": request_id, "deadline": int(headers["lambda-runtime-deadline-ms"]),
                "invoked_function_arn": headers.get("lambda-runtime-invoked-function-arn", ""),
                "xray_trace_id": headers.get("lambda-runtime-trace-id"), "client_context": None, "identity": None,
                "env_config": self.function}

    def _respond(self, request_id: str, response: http.client.HTTPResponse) -> None:
        status = response.status
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in response.getheaders():
            lowered = name.lower()
            if lowered == "set-cookie":
                cookies.append(value)
            elif lowered != "transfer-encoding":  # the adapter strips it: the platform frames the body
                headers[lowered] = value
        prelude = json.dumps({"statusCode": status, "headers": headers, "cookies": cookies}).encode()
        host, port = self.runtime_api.split(":")
        runtime = http.client.HTTPConnection(host, int(port))
        try:
            runtime.putrequest("POST", f"{_RUNTIME}/invocation/{request_id}/response")
            runtime.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
            runtime.putheader("Content-Type", CONTENT_TYPE)
            runtime.putheader("Transfer-Encoding", "chunked")
            runtime.putheader("Trailer", "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")
            runtime.endheaders()
            _send_chunk(runtime, prelude + PRELUDE_DELIMITER)
            for part in _body_parts(response):
                _send_chunk(runtime, part)
            runtime.send(b"0\r\n\r\n")
            runtime.getresponse().read()
        except OSError:
            return  # the Runtime API cut the stream (client gone): the caller closes the app's connection
        finally:
            runtime.close()

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        host, port = self.runtime_api.split(":")
        conn = http.client.HTTPConnection(host, int(port))
        try:
            conn.request("POST", path, body, headers)
            conn.getresponse().read()
        except OSError:
            pass
        finally:
            conn.close()


def http_response(streamed: bytes) -> tuple[dict[str, Any], bytes]:
    """A streamed invocation's result as the integration reads it: (prelude, body)."""
    prelude, found, body = streamed.partition(PRELUDE_DELIMITER)
    if not found:
        raise AssertionError(f"no HTTP integration prelude in {streamed[:200]!r}")
    return json.loads(prelude), body


def http_request(event: dict[str, Any]) -> tuple[str, str, dict[str, str], bytes]:
    """The HTTP request an API Gateway proxy event stands for: method, path?query, headers, body."""
    if event.get("version") == "2.0":
        method = event["requestContext"]["http"]["method"]
        path = event.get("rawPath") or "/"
        query = event.get("rawQueryString") or ""
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        if event.get("cookies"):
            headers["cookie"] = "; ".join(event["cookies"])
    else:
        method = event["httpMethod"]
        path = event.get("path") or "/"
        multi = event.get("multiValueQueryStringParameters") or {}
        pairs = [(k, v) for k, values in multi.items() for v in values] or list(
            (event.get("queryStringParameters") or {}).items())
        query = urllib.parse.urlencode(pairs)
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        for name, values in (event.get("multiValueHeaders") or {}).items():
            headers[name.lower()] = ",".join(values)
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    headers.pop("content-length", None)
    return method, urllib.parse.quote(path, safe="/%:@!$&'()*+,;=-._~") + (f"?{query}" if query else ""), \
        headers, body


def _body_parts(response: http.client.HTTPResponse) -> Iterator[bytes]:
    while True:
        part = response.read1(65536)
        if not part:
            return
        yield part


def _send_chunk(conn: http.client.HTTPConnection, data: bytes) -> None:
    conn.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")
