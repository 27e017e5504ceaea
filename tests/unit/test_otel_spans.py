"""stratus.spans through OpenTelemetry: span names, GenAI semantic-convention attributes, parent/child links,
W3C trace context in and out (the gateway's request span, a workflow task's invocation span), recorded with
the SDK's in-memory exporter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from stratus import spans

pytestmark = pytest.mark.unit

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    spans.use(provider)
    yield memory
    spans.use(None)
    provider.shutdown()


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in exporter.get_finished_spans()}


def test_off_until_a_tracer_provider_is_in_use() -> None:
    spans.use(None)
    with spans.span("lexical", tenant_id="acme") as step, spans.server_span("POST", {"traceparent": TRACEPARENT}):
        step.annotate(candidates=3)
        assert spans.carrier() == {} and spans.trace_id() is None
    assert not spans.otel_enabled() and not step.recording


def test_annotations_become_genai_and_stratus_attributes(exporter: InMemorySpanExporter) -> None:
    with spans.span("model_call", model_alias="fast", skipped=None) as outer:
        with spans.span("provider_attempt", provider="bedrock", deployment="d1", model="m-1") as attempt:
            attempt.annotate(outcome="ok", input_tokens=12)
        outer.annotate(attempts=1)
    found = _by_name(exporter)
    attempt_span, call = found["provider_attempt"], found["model_call"]
    assert dict(attempt_span.attributes or {}) == {
        "gen_ai.provider.name": "aws.bedrock", "stratus.deployment": "d1", "gen_ai.request.model": "m-1",
        "stratus.outcome": "ok", "gen_ai.usage.input_tokens": 12}
    assert attempt_span.kind is SpanKind.CLIENT and call.kind is SpanKind.INTERNAL
    assert dict(call.attributes or {}) == {"stratus.model_alias": "fast", "stratus.attempts": 1}
    # nesting: the attempt is the call's child, in one trace
    assert attempt_span.parent is not None and attempt_span.parent.span_id == call.context.span_id
    assert attempt_span.context.trace_id == call.context.trace_id


def test_an_error_is_recorded_and_propagates(exporter: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError, match="boom"), spans.span("extract"):
        raise ValueError("boom")
    (failed,) = exporter.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]


def test_each_provider_attempt_is_a_span_with_genai_attributes(exporter: InMemorySpanExporter) -> None:
    from stratus.llm import errors
    from stratus.llm.types import Usage
    from tests.unit.test_router import REQUEST, make_router

    router, _, _ = make_router({"primary": [errors.ServerError("boom", status=500), "timeout"],
                                "secondary": [Usage(input_tokens=7, output_tokens=3)]})
    with spans.span("model_call"):
        router.complete("fast", REQUEST)
    attempts = [s for s in exporter.get_finished_spans() if s.name == "provider_attempt"]
    assert len(attempts) == 3  # the retry and the fallback are visible: one span per attempt
    failed, ok = (dict(a.attributes or {}) for a in (attempts[0], attempts[-1]))
    assert failed["gen_ai.provider.name"] == "openai" and failed["stratus.outcome"] == "server_error"
    assert failed["error.type"] == "server_error" and failed["http.response.status_code"] == 500
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert ok["gen_ai.operation.name"] == "chat" and ok["gen_ai.provider.name"] == "anthropic"
    assert ok["gen_ai.request.model"] == "claude-b" and ok["gen_ai.response.model"]
    assert (ok["gen_ai.usage.input_tokens"], ok["gen_ai.usage.output_tokens"]) == (7, 3)
    assert ok["gen_ai.response.finish_reasons"] == ("stop",) and "stratus.cost_usd" in ok
    assert attempts[-1].status.status_code is StatusCode.UNSET
    assert [dict(a.attributes or {})["stratus.attempt"] for a in attempts] == [1, 2, 3]


def test_w3c_context_out_and_back_in(exporter: InMemorySpanExporter) -> None:
    with spans.span("workflow") as step:
        carried = spans.carrier()
        assert step.recording and spans.trace_id() is not None
    (sender,) = exporter.get_finished_spans()
    assert carried["traceparent"].startswith(f"00-{sender.context.trace_id:032x}-{sender.context.span_id:016x}-")
    # the next hop continues it
    with spans.continued(carried), spans.server_span("generate"):
        pass
    receiver = _by_name(exporter)["generate"]
    assert receiver.kind is SpanKind.SERVER
    assert receiver.context.trace_id == sender.context.trace_id
    assert receiver.parent is not None and receiver.parent.span_id == sender.context.span_id
    # a malformed traceparent starts a trace of its own
    with spans.server_span("x", {"traceparent": "00-zz-yy-01"}):
        pass
    assert _by_name(exporter)["x"].parent is None


def test_a_task_invocation_continues_the_workflow_inputs_trace_context(exporter: InMemorySpanExporter) -> None:
    from aws_lambda_powertools import Logger, Metrics

    from stratus.observability import Observability

    obs = Observability("guard", logger=Logger(service="guard"), metrics=Metrics(namespace="T"),
                        emit_metrics=False)

    @obs.handler()
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with spans.span("rail_pii"):
            pass
        return {}

    handler({"stage": "input", "state": {"trace_context": {"traceparent": TRACEPARENT}}}, None)
    found = _by_name(exporter)
    invocation, rail = found["guard"], found["rail_pii"]
    assert f"{invocation.context.trace_id:032x}" == CALLER_TRACE
    assert invocation.parent is not None and f"{invocation.parent.span_id:016x}" == CALLER_SPAN
    assert rail.parent is not None and rail.parent.span_id == invocation.context.span_id


def test_the_gateway_continues_the_callers_traceparent_and_returns_its_own(exporter: InMemorySpanExporter) -> None:
    from stratus.gateway.app import create_app

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.get("/health/live", headers={"traceparent": TRACEPARENT, "tracestate": "k=v"})

    response = asyncio.run(call())
    assert response.status_code == 200
    (request_span,) = exporter.get_finished_spans()
    assert request_span.name == "GET /health/live" and request_span.kind is SpanKind.SERVER
    assert f"{request_span.context.trace_id:032x}" == CALLER_TRACE
    assert request_span.parent is not None and f"{request_span.parent.span_id:016x}" == CALLER_SPAN
    attributes = dict(request_span.attributes or {})
    assert attributes["http.route"] == "/health/live" and attributes["http.response.status_code"] == 200
    # the response names the request's span (the caller's trace id kept) and the trace id alone
    assert response.headers["traceparent"] == f"00-{CALLER_TRACE}-{request_span.context.span_id:016x}-01"
    assert response.headers["tracestate"] == "k=v"
    assert response.headers["x-trace-id"] == CALLER_TRACE


def test_the_gateway_sends_no_trace_headers_when_tracing_is_off() -> None:
    from stratus.gateway.app import create_app

    spans.use(None)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app()), base_url="http://g") as c:
            return await c.get("/health/live", headers={"traceparent": TRACEPARENT})

    response = asyncio.run(call())
    assert response.status_code == 200 and "traceparent" not in response.headers


def test_configure_is_off_without_an_endpoint_and_never_imports_the_sdk() -> None:
    code = ("import sys; from stratus import telemetry; from stratus.config import load_settings; "
            "assert telemetry.configure('gateway', load_settings()) is None; "
            "import stratus.spans as s; "
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))))")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_configure_reads_the_standard_variables() -> None:
    from opentelemetry.sdk.trace import sampling

    from stratus import telemetry
    from stratus.config import load_settings

    s = load_settings(otel_endpoint="http://127.0.0.1:4318/")
    assert telemetry.traces_endpoint(s) == "http://127.0.0.1:4318/v1/traces"
    s = load_settings(otel_endpoint="http://a:4318", otel_traces_endpoint="http://b:9/traces")
    assert telemetry.traces_endpoint(s) == "http://b:9/traces"
    assert telemetry.traces_endpoint(load_settings(otel_endpoint="http://a", otel_sdk_disabled=True)) is None
    ratio = telemetry.sampler(load_settings(otel_traces_sampler="traceidratio", otel_traces_sampler_arg=0.25))
    assert isinstance(ratio, sampling.TraceIdRatioBased) and ratio.rate == 0.25
    provider = telemetry.new_provider(load_settings(otel_service_name="my-gw"), "gateway")
    assert provider.resource.attributes["service.name"] == "my-gw"
    assert provider.resource.attributes["stratus.function"] == "gateway"


def test_an_sqs_message_continues_its_senders_trace(exporter: InMemorySpanExporter) -> None:
    import json

    from stratus.ingest.consumer import process_sqs_batch

    with spans.span("upload"):
        attributes = spans.sqs_message_attributes()
    (sender,) = exporter.get_finished_spans()

    def record(message_id: str, message_attributes: dict[str, Any]) -> dict[str, Any]:
        # an S3 test event: parsed and ignored, so no database is needed
        return {"messageId": message_id, "receiptHandle": "r", "eventSource": "aws:sqs", "attributes": {},
                "body": json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"}),
                "messageAttributes": message_attributes, "eventSourceARN": "arn:aws:sqs:eu-west-1:1:q"}

    # SQS hands the consumer the attributes a sender set, in its own (lower-case) shape
    carried = {k: {"stringValue": v["StringValue"], "dataType": "String"} for k, v in attributes.items()}
    response, _ = process_sqs_batch({"Records": [record("m1", carried), record("m2", {})]})
    assert response == {"batchItemFailures": []}
    messages = {dict(s.attributes or {})["stratus.message_id"]: s for s in exporter.get_finished_spans()
                if s.name == "message"}
    assert messages["m1"].context.trace_id == sender.context.trace_id
    assert messages["m1"].parent is not None and messages["m1"].parent.span_id == sender.context.span_id
    assert messages["m2"].context.trace_id != sender.context.trace_id and messages["m2"].parent is None


def test_prompt_and_completion_text_only_after_the_pii_rail_redacted_them() -> None:
    import json

    from stratus.generation.service import content_attributes
    from stratus.llm.types import ChatRequest, Message
    from stratus.workflow_state import GenerateTask, GuardState, Verdict, new_query

    query = new_query("Mail <EMAIL_1> about it", "acme", mode="chat").model_dump(mode="json")
    request = ChatRequest(messages=[Message(role="user", content="Mail <EMAIL_1> about it")])
    unguarded = GenerateTask.model_validate(query)
    assert content_attributes(unguarded, request, "Done.") == {"stratus.content_omitted": "pii_rail_not_run"}
    guard = GuardState(policy={}, verdicts=[Verdict(rail="pii", stage="input", action="redact", score=0.9)],
                       vault={"<EMAIL_1>": "jane@example.com"})
    guarded = GenerateTask.model_validate({**query, "guard": guard.model_dump(mode="json")})
    attributes = content_attributes(guarded, request, "Sent to <EMAIL_1>.")
    assert json.loads(attributes["gen_ai.input.messages"]) == [{"role": "user", "content": "Mail <EMAIL_1> about it"}]
    assert json.loads(attributes["gen_ai.output.messages"])[0]["content"] == "Sent to <EMAIL_1>."
    assert "jane@example.com" not in json.dumps(attributes)  # the vault never reaches a span


def test_a_web_invocation_flushes_its_spans_after_the_response_is_complete(exporter: InMemorySpanExporter,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from stratus import telemetry
    from stratus.lambda_web import LambdaInvocations
    from tests.unit.test_lambda_web import FakeObs

    events: list[str] = []
    monkeypatch.setattr(telemetry, "flush", lambda timeout_ms=0: events.append("flush") or True)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        with spans.span("work"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message: dict[str, Any]) -> None:
        events.append(message["type"])

    header = json.dumps({"request_id": "inv-1", "deadline": int(time.time() * 1000) + 30_000}).encode()
    scope = {"type": "http", "path": "/x", "headers": [(b"x-amzn-lambda-context", header)]}
    invocations = LambdaInvocations(app, FakeObs(), request_id=lambda given: "req-1")
    asyncio.run(invocations(scope, None, send))
    # the response went out whole before the spans were flushed (Lambda may freeze the process after it)
    assert events == ["http.response.start", "http.response.body", "flush"]
