"""Steps of the library's work as OpenTelemetry spans, when tracing is on.

    from stratus.spans import span

    with span("lexical", tenant_id=tenant) as step:   # a span "lexical" under the current one
        ...
        step.annotate(candidates=len(hits))

Off until `use(tracer_provider)` (stratus.telemetry does it when an OTLP endpoint is set, tests with an
in-memory exporter), so the CLI, the local stack and the tests pay nothing. Each `span` is an OTel span, a
child of the current one (the gateway's request span, a task function's invocation span, or the caller's
context carried in: `continued`). X-Ray gets the same spans through its OTLP endpoint (stratus.telemetry
signs the requests, docs/observability.md); nothing here speaks X-Ray's own protocol.

Annotations are keyword arguments: ids, modes, names, counts and flags, never prompt, answer or document
text; a None value is left out. They become the GenAI semantic conventions' names where one exists
(ATTRIBUTES: `model` is `gen_ai.request.model`, `input_tokens` is `gen_ai.usage.input_tokens`...) and
`stratus.<name>` for the rest (`stratus.tenant_id`, `stratus.cache_hit`...). `Span.set_attributes` adds
attributes under their full names.

Context for the next hop: `carrier()` is W3C trace context (`traceparent`, `tracestate`) of the current span,
which the gateway returns to its caller and passes in the workflow's input, and which `continued(carrier)`
resumes in the task functions; `trace_header()` is the same span in X-Ray's header format, for
StartSyncExecution's `traceHeader` (Step Functions and Lambda record their own segments in that trace).

This module imports neither Powertools nor the OpenTelemetry SDK: only the OpenTelemetry API (which FastAPI
imports anyway) once a tracer is in use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

Annotation = str | int | float | bool | None
AttributeValue = str | int | float | bool | Sequence[str] | Sequence[int] | Sequence[float] | Sequence[bool]

_tracer: Any = None  # an opentelemetry.trace.Tracer once `use` was given a TracerProvider
_use_span: Any = None  # opentelemetry.trace.use_span, and the SpanKinds by name, bound by `use`
_kinds: dict[str, Any] = {}

# Annotation names that have an OpenTelemetry GenAI semantic-convention name (semconv gen-ai spans;
# `gen_ai.provider.name` replaced `gen_ai.system`). Every other annotation is `stratus.<name>`.
ATTRIBUTES = {
    "operation": "gen_ai.operation.name",
    "provider": "gen_ai.provider.name",
    "model": "gen_ai.request.model",
    "max_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "seed": "gen_ai.request.seed",
    "response_model": "gen_ai.response.model",
    "response_id": "gen_ai.response.id",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "status": "http.response.status_code",  # a provider attempt's HTTP status
}
# Stratus's provider names where the convention has a well-known value of its own.
PROVIDER_NAMES = {"bedrock": "aws.bedrock"}
# Spans that are calls out of the process (OTel SpanKind CLIENT); the rest are INTERNAL.
CLIENT_SPANS = frozenset({"provider_attempt", "workflow", "multilingual_invoke"})
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"


def use(tracer_provider: Any) -> None:
    """Record spans through an OpenTelemetry TracerProvider (stratus.telemetry's, or a test's); None: off."""
    global _tracer, _use_span, _kinds
    if tracer_provider is None:
        _tracer = None
        return
    from opentelemetry.trace import SpanKind, use_span

    # Looked up once here, not per span: a span is on every step of a request's path.
    _use_span = use_span
    _kinds = {"client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL, "server": SpanKind.SERVER}
    _tracer = tracer_provider.get_tracer("stratus")


def enabled() -> bool:
    return _tracer is not None


otel_enabled = enabled  # the name the handlers' wrappers use


def attribute_name(key: str) -> str:
    return ATTRIBUTES.get(key) or f"stratus.{key}"


def attributes_of(annotations: Mapping[str, Annotation]) -> dict[str, AttributeValue]:
    """The OpenTelemetry attributes of keyword annotations (None values left out)."""
    out: dict[str, AttributeValue] = {}
    for key, value in annotations.items():
        if value is None:
            continue
        if key == "provider" and isinstance(value, str):
            value = PROVIDER_NAMES.get(value, value)
        if key == "status" and (isinstance(value, bool) or not isinstance(value, int)):
            out["stratus.status"] = value  # a state (an ingested document's "unchanged"), not an HTTP status
            continue
        out[attribute_name(key)] = value
        if key == "outcome" and value != "ok":
            out["error.type"] = str(value)  # a failed attempt names its error class, as the convention asks
    return out


class Span:
    """One open step; `annotate` adds what is learned inside it (a cache hit, an outcome)."""

    __slots__ = ("_otel",)

    def __init__(self, otel: Any = None) -> None:
        self._otel = otel

    def annotate(self, **annotations: Annotation) -> None:
        if self._otel is not None:
            self._otel.set_attributes(attributes_of(annotations))
            outcome = annotations.get("outcome")
            if outcome is not None and outcome != "ok":
                from opentelemetry.trace import Status, StatusCode

                self._otel.set_status(Status(StatusCode.ERROR, str(outcome)))

    def set_attributes(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        """Attributes under their full names (not mapped like `annotate`'s); None values left out."""
        if self._otel is not None:
            self._otel.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def update_name(self, name: str) -> None:
        if self._otel is not None:
            self._otel.update_name(name)

    def set_error(self, description: str) -> None:
        """Marks the OpenTelemetry span failed (an answer the caller gets as an error)."""
        if self._otel is not None:
            from opentelemetry.trace import Status, StatusCode

            self._otel.set_status(Status(StatusCode.ERROR, description))

    @property
    def recording(self) -> bool:
        """True when attributes set here go somewhere (skip computing costly ones otherwise)."""
        return self._otel is not None and bool(self._otel.is_recording())


_OFF = Span()


@contextmanager
def span(name: str, **annotations: Annotation) -> Iterator[Span]:
    """A span `name` around the block, annotated; a no-op when tracing is off. An exception inside is
    recorded on the span (its status set to error), then re-raised."""
    tracer = _tracer
    if tracer is None:
        yield _OFF
        return
    kind = _kinds["client" if name in CLIENT_SPANS else "internal"]
    # start_span + use_span is what start_as_current_span does, one generator fewer per span (same ending,
    # exception recording and error status).
    opened = tracer.start_span(name, kind=kind, attributes=attributes_of(annotations))
    with _use_span(opened, end_on_exit=True):
        yield Span(opened)


@contextmanager
def server_span(name: str, headers: Mapping[str, str] | None = None, **annotations: Annotation) -> Iterator[Span]:
    """An OpenTelemetry SERVER span (a gateway request, a function's invocation): a child of the W3C context
    in `headers` when there is one, else of the current context. A no-op Span when OpenTelemetry is off."""
    tracer = _tracer
    if tracer is None:
        yield _OFF
        return
    parent = context_from(headers) if headers else None
    otel = tracer.start_span(name, context=parent, kind=_kinds["server"], attributes=attributes_of(annotations))
    with _use_span(otel, end_on_exit=True):
        yield Span(otel)


def annotate(**annotations: Annotation) -> None:
    """Annotates the innermost open span (a handler's invocation span when no step is open)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(attributes_of(annotations))


# --- W3C trace context -----------------------------------------------------------------------------------
def carrier() -> dict[str, str]:
    """The current span's W3C trace context (`traceparent`, and `tracestate` when there is one) for the next
    hop; empty when OpenTelemetry is off or no span is recording."""
    if _tracer is None:
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    out: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(out)
    return out


def sqs_message_attributes() -> dict[str, dict[str, str]]:
    """`carrier()` as SQS MessageAttributes (for send_message), which the ingest consumer continues."""
    return {k: {"DataType": "String", "StringValue": v} for k, v in carrier().items()}


def context_from(headers: Mapping[str, str]) -> Any:
    """An OpenTelemetry Context whose parent is the `traceparent` (+ `tracestate`) in `headers` (lower-case
    keys), or None when there is none or it is malformed (the span then starts a trace of its own)."""
    if _tracer is None or not headers.get(TRACEPARENT):
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = TraceContextTextMapPropagator().extract(headers)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


@contextmanager
def continued(headers: Mapping[str, str] | None) -> Iterator[None]:
    """Spans opened in the block are children of the W3C trace context in `headers` (a workflow input's
    `trace_context`, an SQS message's attributes); as it was when there is none or OTel is off."""
    context = context_from(headers) if headers else None
    if context is None:
        yield
        return
    from opentelemetry import context as otel_context

    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def trace_id() -> str | None:
    """The current span's W3C trace id (32 hex digits), None when no span is recording."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def trace_header() -> str | None:
    """The current span as an X-Ray trace header, `Root=1-<8 hex>-<24 hex>;Parent=<span id>;Sampled=<0|1>`
    (X-Ray's form of the same 128-bit trace id), for StartSyncExecution's `traceHeader`: Step Functions and
    the task functions' Lambda segments then land in the trace the spans are in. Without a recording span,
    Lambda's `_X_AMZN_TRACE_ID` for this invocation (set per invocation by the runtime; None outside Lambda)."""
    if _tracer is not None:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            hex_id, sampled = f"{ctx.trace_id:032x}", 1 if ctx.trace_flags.sampled else 0
            return f"Root=1-{hex_id[:8]}-{hex_id[8:]};Parent={ctx.span_id:016x};Sampled={sampled}"
    # A runtime variable, not a setting (it changes with every invocation): read here, not in config.
    return os.environ.get("_X_AMZN_TRACE_ID") or None


def traceparent_of_xray(header: str | None) -> str | None:
    """A W3C `traceparent` for the same trace and parent as an X-Ray header (`Root=1-<8 hex>-<24 hex>;
    Parent=<16 hex>;Sampled=1`), so that spans started from it share the trace X-Ray recorded API Gateway's
    and Lambda's segments in. Only for a header X-Ray sampled: otherwise (Sampled=0 or undecided, no Parent,
    malformed) None, and the span's own sampler decides in a trace of its own."""
    if not header:
        return None
    fields = dict(part.strip().partition("=")[::2] for part in header.split(";"))
    version, _, rest = fields.get("Root", "").partition("-")
    epoch, _, unique = rest.partition("-")
    trace_hex, parent = (epoch + unique).lower(), fields.get("Parent", "").lower()
    if (version != "1" or fields.get("Sampled") != "1" or not _hex(trace_hex, 32) or not _hex(parent, 16)):
        return None
    return f"00-{trace_hex}-{parent}-01"


def lambda_xray_carrier() -> dict[str, str] | None:
    """This Lambda invocation's X-Ray trace (`_X_AMZN_TRACE_ID`) as a W3C carrier, when X-Ray sampled it: what
    an invocation span continues when its event carries no W3C context of its own."""
    traceparent = traceparent_of_xray(os.environ.get("_X_AMZN_TRACE_ID"))
    return {TRACEPARENT: traceparent} if traceparent else None


def _hex(value: str, length: int) -> bool:
    return len(value) == length and value.strip("0") != "" and all(c in "0123456789abcdef" for c in value)
