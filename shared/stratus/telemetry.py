"""OpenTelemetry traces exported over OTLP/HTTP, configured by the standard OTEL_* variables.

    provider = configure("gateway")     # once per process; None when no OTLP endpoint is set
    ...
    flush()                             # after the response: what the batch holds goes out now

On when OTEL_EXPORTER_OTLP_ENDPOINT (a base URL: /v1/traces is appended) or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) is set and OTEL_SDK_DISABLED is not; the sampler follows
OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default parentbased_always_on: a caller's sampled flag is
obeyed), the service name OTEL_SERVICE_NAME (default `stratus-<function>`). The exporter's other settings (headers
such as a backend's API key, timeout, compression, certificate) are the SDK's own OTEL_EXPORTER_OTLP_*
variables, which it reads itself.

Spans are batched (BatchSpanProcessor) and exported by its worker thread, never on the request's path.
Where the process may be frozen between requests (Lambda), the invocation's spans are flushed once its
result has gone back: `flush()`, called by the internal extension (stratus.lambda_extension) while the
runtime posts a handler's result, and by the gateway's middleware after the last byte of the response
(docs/observability.md says why this and not a collector layer). The OTLP exporter (protobuf, requests)
is imported by the worker on its first export, so a cold start pays only for the SDK.

X-Ray: an endpoint on X-Ray's host (`https://xray.<region>.amazonaws.com`, its OTLP endpoint) is posted to
with SigV4-signed requests (stratus.aws.sigv4, the function's role credentials, action xray:PutSpans),
so X-Ray gets the same spans as any other backend, without a collector layer or the X-Ray SDK.

Off (no endpoint), the SDK is never imported and stratus.spans stays a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from stratus import spans
from stratus.config import Settings, get_settings

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
FLUSH_TIMEOUT_MS = 2000

_lock = threading.Lock()
_provider: Any = None  # the SDK TracerProvider configure() made (None: off)
_configured = False


def traces_endpoint(settings: Settings) -> str | None:
    """Where spans go: the traces endpoint as given, else the base endpoint + /v1/traces (as the spec says)."""
    if settings.otel_sdk_disabled:
        return None
    if settings.otel_traces_endpoint:
        return settings.otel_traces_endpoint
    if settings.otel_endpoint:
        return settings.otel_endpoint.rstrip("/") + TRACES_PATH
    return None


def configure(service: str, settings: Settings | None = None) -> Any:
    """The process's TracerProvider (made on the first call, from the settings), installed for
    stratus.spans and as OpenTelemetry's global one; None when no endpoint is set."""
    global _provider, _configured
    with _lock:
        if _configured:
            return _provider
        _configured = True
        s = settings or get_settings()
        endpoint = traces_endpoint(s)
        if endpoint is None:
            return None
        provider = exporting_provider(s, service, endpoint)
        from opentelemetry import trace

        trace.set_tracer_provider(provider)
        spans.use(provider)
        _provider = provider
        log.info("OpenTelemetry traces to %s (sampler %s)", endpoint, s.otel_traces_sampler)
        return provider


def exporting_provider(settings: Settings, service: str, endpoint: str) -> Any:
    """A TracerProvider that batches its spans to the OTLP/HTTP `endpoint` (not installed anywhere)."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = new_provider(settings, service)
    provider.add_span_processor(BatchSpanProcessor(lazy_otlp_exporter(endpoint, settings.otel_headers_secret_arn)))
    return provider


def new_provider(settings: Settings, service: str) -> Any:
    """A TracerProvider with the service's resource and the configured sampler (no processor yet)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"service.name": settings.otel_service_name or f"stratus-{service}",
                                "service.namespace": "stratus",
                                "stratus.function": service, "deployment.environment.name": settings.env})
    return TracerProvider(resource=resource, sampler=sampler(settings))


def sampler(settings: Settings) -> Any:
    from opentelemetry.sdk.trace import sampling

    ratio = settings.otel_traces_sampler_arg
    match settings.otel_traces_sampler:
        case "always_on":
            return sampling.ALWAYS_ON
        case "always_off":
            return sampling.ALWAYS_OFF
        case "traceidratio":
            return sampling.TraceIdRatioBased(ratio)
        case "parentbased_always_off":
            return sampling.ParentBased(sampling.ALWAYS_OFF)
        case "parentbased_traceidratio":
            return sampling.ParentBased(sampling.TraceIdRatioBased(ratio))
        case _:
            return sampling.ParentBased(sampling.ALWAYS_ON)


def provider() -> Any:
    return _provider


def flush(timeout_ms: int = FLUSH_TIMEOUT_MS) -> bool:
    """Exports what the batch holds now (the end of a Lambda invocation); True when nothing is left."""
    if _provider is None:
        return True
    try:
        return bool(_provider.force_flush(timeout_ms))
    except Exception:  # noqa: BLE001 - tracing never fails a request
        log.warning("flushing spans failed", exc_info=True)
        return False


def reset() -> None:
    """Forget the configuration (tests): spans go nowhere until configure or spans.use is called again."""
    global _provider, _configured
    with _lock:
        if _provider is not None:
            _provider.shutdown()
        _provider, _configured = None, False
        spans.use(None)


def signing_session(endpoint: str, credentials: Any = None) -> Any:
    """A requests Session that SigV4-signs its requests when `endpoint` is X-Ray's (None otherwise: the
    exporter makes its own, and takes OTEL_EXPORTER_OTLP_HEADERS for a backend's key)."""
    from urllib.parse import urlsplit

    from stratus.aws.sigv4 import SigV4Auth, xray_region

    region = xray_region(urlsplit(endpoint).hostname or "")
    if region is None:
        return None
    import requests

    session = requests.Session()
    session.auth = SigV4Auth("xray", region, credentials)
    return session


def lazy_otlp_exporter(endpoint: str, headers_secret_arn: str | None = None) -> Any:
    """The OTLP/HTTP (protobuf) span exporter, imported and made on the first export (on the batch
    processor's worker thread), so a cold start does not pay for protobuf and requests, nor for reading the
    headers' secret (`headers_secret_arn`: a JSON object of header names and values)."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class LazyOTLPExporter(SpanExporter):
        def __init__(self) -> None:
            self.endpoint = endpoint
            self._exporter: Any = None

        def _get(self) -> Any:
            if self._exporter is None:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                headers = None
                if headers_secret_arn:
                    from stratus.aws.secrets import json_secret

                    headers = json_secret(headers_secret_arn) or None
                self._exporter = OTLPSpanExporter(endpoint=self.endpoint, headers=headers,
                                                  session=signing_session(self.endpoint))
            return self._exporter

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            try:
                exporter = self._get()
            except Exception:  # noqa: BLE001 - the secret unreadable now: this batch is lost, the next one retries
                log.warning("cannot make the OTLP exporter (headers secret %s)", headers_secret_arn, exc_info=True)
                return SpanExportResult.FAILURE
            result: SpanExportResult = exporter.export(spans)
            return result

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True if self._exporter is None else bool(self._exporter.force_flush(timeout_millis))

        def shutdown(self) -> None:
            if self._exporter is not None:
                self._exporter.shutdown()

    return LazyOTLPExporter()
