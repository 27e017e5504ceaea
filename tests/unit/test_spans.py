"""stratus.spans apart from the attribute mapping (tests/unit/test_otel_spans.py): off until a tracer is in
use, the X-Ray form of the current span for the workflow's traceHeader, and X-Ray headers read back as W3C."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from stratus import spans

XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    spans.use(provider)
    yield memory
    spans.use(None)
    provider.shutdown()


def test_spans_do_nothing_until_a_tracer_is_in_use() -> None:
    spans.use(None)
    with spans.span("lexical", tenant_id="acme") as step:
        step.annotate(candidates=3)  # a no-op, not an error
    spans.annotate(request_id="req-1")
    assert not spans.enabled() and not step.recording


def test_trace_header_is_the_current_span_in_xrays_format(exporter: InMemorySpanExporter) -> None:
    with spans.span("workflow"):
        header = spans.trace_header()
    (workflow,) = exporter.get_finished_spans()
    trace_hex = f"{workflow.context.trace_id:032x}"
    # the same 128-bit id: Step Functions' and the tasks' Lambda segments land in the spans' trace
    assert header == f"Root=1-{trace_hex[:8]}-{trace_hex[8:]};Parent={workflow.context.span_id:016x};Sampled=1"
    assert spans.traceparent_of_xray(header) == f"00-{trace_hex}-{workflow.context.span_id:016x}-01"


def test_an_unsampled_span_says_so_in_the_trace_header() -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    spans.use(provider)
    try:
        with spans.span("workflow"):
            header = spans.trace_header()
    finally:
        spans.use(None)
    assert header is not None and header.endswith(";Sampled=0")


def test_trace_header_falls_back_to_lambdas_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    spans.use(None)
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    assert spans.trace_header() is None
    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY)
    assert spans.trace_header() == XRAY
    provider = TracerProvider()
    spans.use(provider)  # on, but no span open: still Lambda's
    try:
        assert spans.trace_header() == XRAY
    finally:
        spans.use(None)


@pytest.mark.parametrize("header", [
    None, "", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",  # undecided
    "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",  # no parent
    "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "Root=1-5759e988-bd862e3fe1be46a99427279;Parent=53995c3f42cd8ad8;Sampled=1",  # 31 hex digits
    "Root=1-00000000-000000000000000000000000;Parent=53995c3f42cd8ad8;Sampled=1",  # all zero: invalid
    "Root=1-5759e988-bd862e3fe1be46a99427279z;Parent=53995c3f42cd8ad8;Sampled=1",
])
def test_only_a_well_formed_sampled_xray_header_becomes_a_traceparent(header: str | None) -> None:
    assert spans.traceparent_of_xray(header) is None


def test_an_xray_header_in_any_order_and_case_becomes_a_traceparent() -> None:
    header = "Sampled=1;Parent=53995C3F42CD8AD8;Root=1-5759E988-BD862E3FE1BE46A994272793;Lineage=a:1"
    assert spans.traceparent_of_xray(header) == "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"


def test_observability_steps_and_annotations_are_spans(exporter: InMemorySpanExporter) -> None:
    from stratus.observability import Observability

    obs = Observability("migrate", logger=None, metrics=None, emit_metrics=False)  # type: ignore[arg-type]
    with spans.server_span("migrate"):
        obs.annotate(request_id="req-1")
        with obs.step("publish_prompts", tenant_id="acme") as step:
            step.annotate(applied=2)
    step_span, invocation = exporter.get_finished_spans()
    assert step_span.name == "publish_prompts" and step_span.parent is not None
    assert step_span.parent.span_id == invocation.context.span_id
    assert dict(step_span.attributes or {}) == {"stratus.tenant_id": "acme", "stratus.applied": 2}
    assert dict(invocation.attributes or {}) == {"stratus.request_id": "req-1"}


def test_nothing_imports_powertools_tracer_or_the_xray_sdk() -> None:
    # The request path's modules import no tracing library; a function's whole set-up (observe), as on
    # Lambda, creates no Powertools Tracer: the X-Ray SDK is never loaded.
    code = ("import sys, stratus.spans, stratus.retrieval.service, stratus.llm.router, stratus.guard.rails, "
            "stratus.ingest.pipeline, stratus.generation.service; "
            "print(sorted(m for m in ('aws_xray_sdk', 'aws_lambda_powertools') if m in sys.modules)); "
            "from stratus.observability import observe; observe('retrieve'); "
            "print(sorted(m for m in ('aws_xray_sdk',) if m in sys.modules))")
    env = {"PATH": "/usr/bin:/bin", "LAMBDA_TASK_ROOT": "/var/task", "AWS_LAMBDA_FUNCTION_NAME": "retrieve",
           "PYTHONPATH": ":".join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout + out.stderr


def test_an_invocation_without_w3c_context_continues_the_trace_xray_sampled(exporter: InMemorySpanExporter,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools import Logger, Metrics

    from stratus.observability import Observability

    obs = Observability("ingest", logger=Logger(service="ingest"), metrics=Metrics(namespace="T"), emit_metrics=False)

    @obs.handler()
    def handler(event: dict[str, object], context: object) -> None:
        return None

    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY)  # set per invocation by the runtime
    handler({"Records": []}, None)
    w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    handler({"trace_context": {"traceparent": w3c}}, None)  # the workflow's own context wins
    monkeypatch.setenv("_X_AMZN_TRACE_ID", XRAY.replace("Sampled=1", "Sampled=0"))
    handler({}, None)  # not sampled by X-Ray: a trace of its own
    from_xray, from_workflow, own = exporter.get_finished_spans()
    assert f"{from_xray.context.trace_id:032x}" == "5759e988bd862e3fe1be46a994272793"
    assert from_xray.parent is not None and f"{from_xray.parent.span_id:016x}" == "53995c3f42cd8ad8"
    assert f"{from_workflow.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert own.parent is None and f"{own.context.trace_id:032x}" != "5759e988bd862e3fe1be46a994272793"


def test_only_a_numeric_status_is_an_http_status_code() -> None:
    assert spans.attributes_of({"status": 429}) == {"http.response.status_code": 429}
    # an ingested document's state is no HTTP status
    assert spans.attributes_of({"status": "unchanged"}) == {"stratus.status": "unchanged"}
