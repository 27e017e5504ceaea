"""A loopback OTLP/HTTP receiver: what the functions' OpenTelemetry exporters post to `/v1/traces`
(protobuf ExportTraceServiceRequest, as the SDK's OTLP/HTTP exporter sends it), decoded into plain spans.

The contract tier points every function's OTEL_EXPORTER_OTLP_ENDPOINT here, so each process (under the
Runtime Interface Client, with only its layers on sys.path) must import the SDK and exporter from
CommonLayer, and must flush before its invocation ends: spans still queued when the process is frozen
would never arrive. (tests/integration/test_otel_backend.py sends the same protocol to a real backend.)
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# The exporter's headers the tier puts in OtelExporterHeadersSecretArn's secret: every request must carry them.
OTLP_HEADERS = {"x-stratus-tier": "contract-key"}


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


class OTLPCollector:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.request_headers: list[dict[str, str]] = []  # each export request's HTTP headers
        self.delay_s = 0.0  # how long each export request waits for its answer
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceRequest,
                    ExportTraceServiceResponse,
                )

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest.FromString(body)
                time.sleep(collector.delay_s)  # a slow backend, as a test asks
                collector.request_headers.append(dict(self.headers.items()))
                collector._add(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> OTLPCollector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _add(self, request: Any) -> None:
        self.requests += 1
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(ReceivedSpan(
                        trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex() or None, name=s.name, kind=s.kind,
                        attributes={a.key: _value(a.value) for a in s.attributes}, resource=resource))

    def trace(self, trace_id: str, *, names: set[str], wait_s: float = 10.0) -> list[ReceivedSpan]:
        """The trace's spans once every name in `names` arrived (or what arrived after `wait_s`)."""
        deadline = time.monotonic() + wait_s
        while True:
            found = [s for s in list(self.spans) if s.trace_id == trace_id]
            if names <= {s.name for s in found} or time.monotonic() > deadline:
                return found
            time.sleep(0.1)
