"""Steps of the library's work as OpenTelemetry spans (and X-Ray subsegments), when tracing is on.

    from stratus.spans import span

    with span("lexical", tenant_id=tenant) as step:   # a span "lexical" under the current one
        ...
        step.annotate(candidates=len(hits))

Two sinks, each off until installed, so the CLI, the local stack and the tests pay nothing for them:
- OpenTelemetry: `use(tracer_provider)` (stratus.telemetry does it when an OTLP endpoint is set, tests with
  an in-memory exporter). Each `span` is an OTel span, a child of the current one (the gateway's request
  span, a task function's invocation span, or the caller's context carried in: `continued`).
- X-Ray: `install(recorder)` (stratus.observability, for a Lambda with `Tracing: Active` and
  STRATUS_TRACING on): each span is also a `## name` subsegment with X-Ray annotations.

Annotations are keyword arguments: ids, modes, names, counts and flags, never prompt, answer or document
text; a None value is left out. X-Ray gets them under their own names. OpenTelemetry gets the GenAI
semantic conventions' names where one exists (ATTRIBUTES: `model` is `gen_ai.request.model`,
`input_tokens` is `gen_ai.usage.input_tokens`...) and `stratus.<name>` for the rest (`stratus.tenant_id`,
`stratus.cache_hit`...). `Span.set_attributes` adds OTel-only attributes under their full names.

Context for the next hop: `trace_header()` is X-Ray's (StartSyncExecution's `traceHeader`); `carrier()` is
W3C trace context (`traceparent`, `tracestate`) of the current span, which the gateway returns to its caller
and passes in the workflow's input, and which `continued(carrier)` resumes in the task functions.

This module imports neither the X-Ray SDK, Powertools nor the OpenTelemetry SDK: only the OpenTelemetry
API (which FastAPI imports anyway) once a tracer is in use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

Annotation = str | int | float | bool | None
AttributeValue = str | int | float | bool | Sequence[str] | Sequence[int] | Sequence[float] | Sequence[bool]

_provider: Any = None  # the Powertools Tracer's provider (aws_xray_sdk's recorder) once a handler installed it
_tracer: Any = None  # an opentelemetry.trace.Tracer once `use` was given a TracerProvider

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
CLIENT_SPANS = frozenset({"provider_attempt", "workflow"})
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"


def install(provider: Any) -> None:
    """Record spans as X-Ray subsegments through `provider` (a Powertools Tracer's); None turns that off."""
    global _provider
    _provider = provider


def use(tracer_provider: Any) -> None:
    """Record spans through an OpenTelemetry TracerProvider (stratus.telemetry's, or a test's); None: off."""
    global _tracer
    _tracer = None if tracer_provider is None else tracer_provider.get_tracer("stratus")


def enabled() -> bool:
    return _provider is not None or _tracer is not None


def otel_enabled() -> bool:
    return _tracer is not None


def attribute_name(key: str) -> str:
    return ATTRIBUTES.get(key) or f"stratus.{key}"


def attributes_of(annotations: Mapping[str, Annotation]) -> dict[str, AttributeValue]:
    """The OpenTelemetry attributes of X-Ray-style annotations (None values left out)."""
    out: dict[str, AttributeValue] = {}
    for key, value in annotations.items():
        if value is None:
            continue
        if key == "provider" and isinstance(value, str):
            value = PROVIDER_NAMES.get(value, value)
        out[attribute_name(key)] = value
        if key == "outcome" and value != "ok":
            out["error.type"] = str(value)  # a failed attempt names its error class, as the convention asks
    return out


class Span:
    """One open step; `annotate` adds what is learned inside it (a cache hit, an outcome)."""

    __slots__ = ("_subsegment", "_otel")

    def __init__(self, subsegment: Any = None, otel: Any = None) -> None:
        self._subsegment = subsegment
        self._otel = otel

    def annotate(self, **annotations: Annotation) -> None:
        if self._subsegment is not None:
            _put(self._subsegment, annotations)
        if self._otel is not None:
            self._otel.set_attributes(attributes_of(annotations))
            outcome = annotations.get("outcome")
            if outcome is not None and outcome != "ok":
                from opentelemetry.trace import Status, StatusCode

                self._otel.set_status(Status(StatusCode.ERROR, str(outcome)))

    def set_attributes(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        """OpenTelemetry attributes under their full names (not sent to X-Ray); None values left out."""
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
    """A span `name` (and a `## name` subsegment) around the block, annotated; a no-op when tracing is off."""
    with open_span(_provider, name, annotations) as opened:
        yield opened


@contextmanager
def open_span(provider: Any, name: str, annotations: dict[str, Annotation], *, otel: bool = True) -> Iterator[Span]:
    """`span` through a given X-Ray provider (Observability.step passes its own Tracer's); `otel=False`
    records the subsegment only (the gateway's `## handler`, whose OTel counterpart is the request span)."""
    tracer = _tracer if otel else None
    if provider is None and tracer is None:
        yield _OFF
        return
    with ExitStack() as stack:
        opened: Any = None
        subsegment: Any = None
        if tracer is not None:
            from opentelemetry.trace import SpanKind

            kind = SpanKind.CLIENT if name in CLIENT_SPANS else SpanKind.INTERNAL
            # An exception inside is recorded on the span (and its status set to error), then re-raised.
            opened = stack.enter_context(tracer.start_as_current_span(name, kind=kind,
                                                                      attributes=attributes_of(annotations)))
        if provider is not None:
            subsegment = stack.enter_context(provider.in_subsegment(f"## {name}"))
            _put(subsegment, annotations)
        yield Span(subsegment, opened)


@contextmanager
def server_span(name: str, headers: Mapping[str, str] | None = None, **annotations: Annotation) -> Iterator[Span]:
    """An OpenTelemetry SERVER span (a gateway request, a function's invocation): a child of the W3C context
    in `headers` when there is one, else of the current context; not an X-Ray subsegment (Lambda and
    Powertools record those). A no-op Span when OpenTelemetry is off."""
    tracer = _tracer
    if tracer is None:
        yield _OFF
        return
    from opentelemetry.trace import SpanKind

    parent = context_from(headers) if headers else None
    with tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER,
                                      attributes=attributes_of(annotations)) as otel:
        yield Span(None, otel)


def annotate(**annotations: Annotation) -> None:
    """Annotates the innermost open span (and subsegment: a handler's `## handler` when no span is open)."""
    annotate_with(_provider, annotations)


def annotate_with(provider: Any, annotations: dict[str, Annotation]) -> None:
    if _tracer is not None:
        from opentelemetry import trace

        trace.get_current_span().set_attributes(attributes_of(annotations))
    if provider is None:
        return
    try:
        entity = provider.get_trace_entity()
    except Exception:  # no segment in this context (e.g. a thread the SDK has no context for)
        return
    _put(entity, annotations)


def _put(entity: Any, annotations: dict[str, Annotation]) -> None:
    for key, value in annotations.items():
        if value is None:
            continue
        try:
            entity.put_annotation(key, value)
        except Exception:  # Lambda's own (facade) segment refuses changes; a step never fails on tracing
            return


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
    """The X-Ray header of the work in progress, for the next hop: `Root=...;Parent=<current subsegment>;
    Sampled=...` when a traced handler is running, else Lambda's `_X_AMZN_TRACE_ID` for this invocation
    (set per invocation by the runtime; None outside Lambda)."""
    if _provider is not None:
        try:
            entity = _provider.get_trace_entity()
            root, parent, sampled = entity.trace_id, entity.id, entity.sampled
        except Exception:
            root = None
        if root and parent and parent.strip("0"):  # a no-op (unsampled, SDK off) entity has an all-zero id
            return f"Root={root};Parent={parent};Sampled={1 if sampled else 0}"
    # A runtime variable, not a setting (it changes with every invocation): read here, not in config.
    return os.environ.get("_X_AMZN_TRACE_ID") or None
