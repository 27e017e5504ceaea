"""Logging, metrics and tracing for a Lambda function, set up once at module scope by its handler.

    obs = observe("retrieve")                      # module scope: Logger, Metrics, OpenTelemetry (if on)

    @obs.handler(correlation_id=lambda event: event.get("request_id"))
    def handler(event, context): ...

Logs are JSON (Powertools Logger) with the function's correlation id, and the library's own loggers
write through the same formatter. Metrics are CloudWatch EMF lines, flushed after each invocation,
only when `STRATUS_EMIT_METRICS` is on (the template turns it on; locally stdout belongs to the commands).

Traces are OpenTelemetry only (stratus.telemetry), on when an OTLP endpoint is set
(OTEL_EXPORTER_OTLP_ENDPOINT; X-Ray takes them at its OTLP endpoint, signed): each invocation is a SERVER
span named after the function, a child of the W3C trace context the event carries (the query workflow's
`trace_context`, in the state or in a guard event's `state`) or else of the invocation's X-Ray trace when
X-Ray sampled it (`_X_AMZN_TRACE_ID`), with `obs.step` and the library's spans (stratus.spans) under it. On
Lambda the batch is flushed by an internal extension once the result has gone back (stratus.lambda_extension),
elsewhere (or if the extension could not register) when the handler has returned (docs/observability.md). The
X-Ray SDK is not used: Powertools' Tracer is never created, so its ~400 ms of cold start is gone.

Under SnapStart (GuardMultilingualFunction) every environment is restored from one snapshot of the init, so
what the init drew at random is shared; `observe` registers an after-restore hook that reseeds `random`, which
OpenTelemetry draws trace and span ids from (docs/deploy.md, "SnapStart").
"""

from __future__ import annotations

import functools
import importlib
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from stratus import spans, telemetry
from stratus.config import get_settings

NAMESPACE = "Stratus"

Handler = Callable[[Any, Any], Any]


@dataclass
class Observability:
    service: str
    logger: Logger
    metrics: Metrics
    emit_metrics: bool
    extension: Any = None  # stratus.lambda_extension.FlushAfterResponse when it registered, else None

    def handler(self, correlation_id: Callable[[Any], str | None] | None = None) -> Callable[[Handler], Handler]:
        """Decorates a Lambda handler: context and correlation id in every log line, metrics flushed after
        the invocation, and the invocation traced as a span. Its spans are flushed by the extension once the
        result has gone back, or before the handler returns where the extension did not register."""

        def decorate(fn: Handler) -> Handler:
            @functools.wraps(fn)
            def run(event: Any, context: Any) -> Any:
                traced = spans.otel_enabled()
                try:
                    if correlation_id is not None:
                        self.logger.set_correlation_id(_safe(correlation_id, event))
                    if not traced:
                        return fn(event, context)
                    # The workflow's W3C context, else the trace X-Ray sampled this invocation in (an SQS
                    # message's AWSTraceHeader, Step Functions' traceHeader): X-Ray shows one trace either way.
                    carried = trace_context_of(event) or spans.lambda_xray_carrier()
                    with spans.continued(carried), spans.server_span(self.service):
                        return fn(event, context)
                finally:
                    # Always: a registered extension waits for this (up to the deadline) before it asks
                    # Lambda for the next event, traced or not.
                    if self.extension is not None:
                        self.extension.handler_done()  # it flushes while the runtime posts the result
                    elif traced:
                        telemetry.flush()  # the spans leave before Lambda may freeze the process

            injected = self.logger.inject_lambda_context(run, clear_state=True)

            def entry(event: Any, context: Any) -> Any:
                # Lambda's context (and the local stack's) carries the function's identity for the log
                # keys; a caller without one (a test, a script) still gets the handler.
                return injected(event, context) if hasattr(context, "function_name") else run(event, context)

            wrapped: Handler = entry
            if self.emit_metrics:
                wrapped = self.metrics.log_metrics(wrapped)
            return functools.wraps(fn)(wrapped)

        return decorate

    @contextmanager
    def step(self, name: str, **annotations: spans.Annotation) -> Iterator[spans.Span]:
        """A named span around one step of the handler's work (a no-op without tracing)."""
        with spans.span(name, **annotations) as opened:
            yield opened

    def annotate(self, **annotations: spans.Annotation) -> None:
        """Annotates the innermost open span (the invocation's, in a handler's body): tenant, request, mode,
        outcome. Ids and labels only, never prompt text. No-op without tracing."""
        spans.annotate(**annotations)

    def flush_metrics(self) -> None:
        """Writes this invocation's metrics (what `handler` does after a plain handler returns)."""
        if self.emit_metrics:
            self.metrics.flush_metrics()

    def count(self, name: str, value: float = 1) -> None:
        """Adds to a Count metric of this invocation (sent with the others when the handler returns)."""
        if self.emit_metrics:
            from aws_lambda_powertools.metrics import MetricUnit

            self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def trace_context_of(event: Any) -> dict[str, str] | None:
    """The W3C trace context a workflow task's event carries: the state's `trace_context` (a guard event's
    is in its `state`)."""
    if not isinstance(event, dict):
        return None
    for holder in (event, event.get("state")):
        if isinstance(holder, dict) and isinstance(holder.get("trace_context"), dict):
            carried = holder["trace_context"]
            return {k: v for k, v in carried.items() if isinstance(k, str) and isinstance(v, str)}
    return None


def _safe(extract: Callable[[Any], str | None], event: Any) -> str | None:
    try:
        value = extract(event)
    except (AttributeError, KeyError, TypeError):
        return None
    return str(value) if value else None


def after_restore(logger: Logger) -> None:
    """Run by the runtime when a SnapStart environment resumes from its version's snapshot: every environment
    restored from it starts with the `random` state the snapshot caught, and OpenTelemetry's ids come from
    it. Reseeded from the restored system's entropy (os.urandom), each environment draws its own again."""
    random.seed()
    logger.info("restored from a SnapStart snapshot; random reseeded")


_restore_hook_registered = False


def register_snapstart_hooks(logger: Logger) -> bool:
    """Registers `after_restore` with the runtime's hook library (snapshot_restore_py: the python3.12 runtime
    has it, the Runtime Interface Client depends on it), which runs it only in an environment restored from a
    snapshot; False where the library is missing (nothing to restore there). Once per process: a process that
    builds several handlers (tests, the local stack) would otherwise reseed once per handler."""
    global _restore_hook_registered
    try:
        hooks = importlib.import_module("snapshot_restore_py")
    except ImportError:
        return False
    if not _restore_hook_registered:
        hooks.register_after_restore(after_restore, logger)
        _restore_hook_registered = True
    return True


def observe(service: str, *, flush_after_result: bool = True) -> Observability:
    """The function's Logger, Metrics and OpenTelemetry provider; call once, at module scope (cold start).
    On Lambda with tracing on, `flush_after_result` registers the internal extension that flushes each
    invocation's spans after the result has gone (the gateway, which flushes after its streamed response
    itself, passes False)."""
    settings = get_settings()
    logger = Logger(service=service, level=settings.log_level)
    copy_config_to_registered_loggers(source_logger=logger, include={"stratus"})  # library logs as JSON too
    metrics = Metrics(namespace=NAMESPACE, service=service)
    register_snapstart_hooks(logger)
    extension = None
    if telemetry.configure(service, settings) is not None and flush_after_result and settings.lambda_runtime_api:
        from stratus import lambda_extension

        extension = lambda_extension.start(settings.lambda_runtime_api, telemetry.flush)
    return Observability(service, logger, metrics, settings.emit_metrics, extension)
