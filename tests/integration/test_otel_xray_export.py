"""Spans to X-Ray's OTLP endpoint: the same lazy OTLP/HTTP exporter and batch processor the functions use
post a protobuf request whose SigV4 signature covers exactly the bytes received (checked from the
specification by tests/unit/test_sigv4.py's verifier). X-Ray's host is stood in for by a loopback server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from stratus import spans, telemetry
from stratus.aws import sigv4
from stratus.config import load_settings
from tests.unit.test_sigv4 import expected_signature

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_the_functions_exporter_signs_what_it_posts_to_xray(receiver: tuple[str, list[dict[str, Any]]],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    url, received = receiver
    # Given the loopback server standing for xray.eu-west-1.amazonaws.com, and a role's credentials
    monkeypatch.setattr(sigv4, "xray_region", lambda host: "eu-west-1" if host == "127.0.0.1" else None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDROLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "role-session")
    telemetry.reset()
    try:
        # When an invocation's spans are flushed the way Observability.handler does
        assert telemetry.configure("retrieve", load_settings(otel_endpoint=url)) is not None
        with spans.server_span("retrieve"), spans.span("lexical", tenant_id="acme"):
            pass
        assert telemetry.flush()
    finally:
        telemetry.reset()
    # Then one signed OTLP request arrived, its signature valid for the bytes received
    (request,) = received
    assert request["path"] == "/v1/traces"
    headers = request["headers"]
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDROLE/")
    assert "/eu-west-1/xray/aws4_request" in headers["Authorization"]
    assert headers["X-Amz-Security-Token"] == "role-session"
    signature = headers["Authorization"].rsplit("Signature=", 1)[1]
    assert signature == expected_signature("POST", f"{url}/v1/traces", headers, request["body"], SECRET,
                                           "eu-west-1", "xray")
    names = {s.name for rs in ExportTraceServiceRequest.FromString(request["body"]).resource_spans
             for ss in rs.scope_spans for s in ss.spans}
    assert names == {"retrieve", "lexical"}


def test_without_an_extensions_api_the_handler_flushes_itself(receiver: tuple[str, list[dict[str, Any]]]) -> None:
    from aws_lambda_powertools import Logger, Metrics

    from stratus import lambda_extension
    from stratus.observability import Observability
    from stratus_tools.local.ports import free_port

    # Given no Extensions API where the runtime's should be (registration refused): no extension
    assert lambda_extension.start(f"127.0.0.1:{free_port()}", telemetry.flush) is None
    url, received = receiver
    telemetry.reset()
    try:
        telemetry.configure("retrieve", load_settings(otel_endpoint=url))
        obs = Observability("retrieve", logger=Logger(service="retrieve"), metrics=Metrics(namespace="T"),
                            emit_metrics=False, extension=None)
        # When a handler returns
        obs.handler()(lambda event, context: {"ok": True})({}, None)
        # Then its spans were exported before it returned (nothing left queued for a frozen process)
        assert len(received) == 1
    finally:
        telemetry.reset()
