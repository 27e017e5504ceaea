"""Traces as the deployed functions export them: OpenTelemetry spans over OTLP/HTTP to the endpoint the
template's OtelExporterEndpoint sets (a loopback receiver here), one request one trace, a span per step.

X-Ray's trace header, where there is one, names the trace: the caller's header goes to StartSyncExecution
(`traceHeader`), the local Step Functions hands it to each Lambda task's invocation (Lambda-Runtime-Trace-Id)
as a state machine with tracing on does, and each task's invocation span continues that (sampled) trace, with
a span per step under it. So in X-Ray the spans share the trace of Lambda's and Step Functions' own segments.
Ingestion traces its steps per object event; a message that carries an X-Ray AWSTraceHeader continues its
sender's trace. Nothing goes to the X-Ray daemon's port: the X-Ray SDK is gone.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from tests.integration.gateway_support import tenant_with_key
from tests.lambda_contract.otlp import OTLP_HEADERS, OTLPCollector, ReceivedSpan
from tests.lambda_contract.process import FunctionProcess
from tests.lambda_contract.runtime_api import Invocation, new_trace_header
from tests.lambda_contract.xray import XRayCollector, trace_hex

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "examples" / "corpus" / "security-policy.md"
QUESTION = "How often are API keys rotated?"

# The steps each task function records (as spans under its invocation span).
WORKFLOW_STEPS = {
    # Groundedness only flags by default: the output stage leaves it to the gateway, after the response.
    "guard": {"policy", "rail_injection", "rail_pii", "rail_context_injection", "rail_canary", "rail_toxicity"},
    "retrieve": {"embed_query", "filters", "lexical", "dense", "fusion", "fetch", "rerank"},
    "generate": {"prompt", "cache_lookup", "model_call", "provider_attempt", "record"},
}
INGEST_STEPS = {"document", "download", "lookup", "extract", "chunk", "embed", "store"}


SERVER = 2  # OTLP's SpanKind SERVER: a function's invocation span


def _invocations(otlp: OTLPCollector, trace_header: str, expect: set[str], wait_s: float = 20.0,
                 counts: dict[str, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The trace's invocation spans by function (the resource's `stratus.function`), each with the spans
    under it (its `steps`, at any depth); waits until every name in `expect` arrived and each function in
    `counts` has that many invocations (spans leave after each invocation's result: the last task's may
    still be on their way when the workflow has answered)."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        found = _tree(otlp.trace(trace_hex(trace_header), names=expect, wait_s=wait_s))
        if all(len(found.get(f, [])) >= n for f, n in (counts or {}).items()) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _tree(found: list[ReceivedSpan]) -> dict[str, list[dict[str, Any]]]:
    by_id = {s.span_id: s for s in found}
    invocations: dict[str, list[dict[str, Any]]] = {}
    entries: dict[str, dict[str, Any]] = {}
    for s in found:
        function = s.resource.get("stratus.function")
        if s.kind == SERVER and s.name == function:
            entry = {"span": s, "steps": []}
            invocations.setdefault(function, []).append(entry)
            entries[s.span_id] = entry
    for s in found:  # a step belongs to its nearest invocation span
        up = s.parent_id
        while up is not None and up not in entries:
            up = by_id[up].parent_id if up in by_id else None
        if up is not None and s.span_id not in entries:
            entries[up]["steps"].append(s)
    return invocations


def _step_names(invocations: list[dict[str, Any]]) -> set[str]:
    return {s.name for i in invocations for s in i["steps"]}


def _attributes(invocations: dict[str, list[dict[str, Any]]]) -> str:
    every: list[ReceivedSpan] = [s for i in invocations.values() for e in i for s in [e["span"], *e["steps"]]]
    return json.dumps([s.attributes for s in every], default=str)


@pytest.fixture(scope="module")
def corpus(contract_stack: Any, functions: dict[str, FunctionProcess]) -> dict[str, Any]:
    """A tenant whose document went S3 -> SQS -> the ingest process (no trace header: S3 sends none)."""
    tenant, _ = tenant_with_key(contract_stack.database_url, "tr")
    key = f"tenants/{tenant}/security-policy.md"
    ingest = functions["IngestFunction"]
    contract_stack.client("s3").put_object(Bucket=contract_stack.documents_bucket, Key=key,
                                           Body=DOCUMENT.read_bytes())
    assert contract_stack.wait_for_ingestion(timeout=180), "ingestion did not finish"
    runs = _invocations_for(ingest, key)
    assert runs, f"the ingest process never got {key}\n{ingest.log_text()[-3000:]}"
    return {"tenant": tenant, "key": key, "ingest_runs": runs}


def _invocations_for(process: FunctionProcess, key: str) -> list[Invocation]:
    quoted = quote_plus(key)
    return [inv for inv in list(process.api.invocations.values())
            if quoted in json.dumps(inv.event) or key in json.dumps(inv.event)]


def test_the_workflow_tasks_trace_their_steps_under_the_callers_trace(corpus: dict[str, Any],
                                                                      otlp: OTLPCollector) -> None:
    from stratus.aws.workflows import run_workflow
    from stratus.workflow_state import new_query

    # Given a caller's trace header, when it runs a RAG question through the workflow (StartSyncExecution)
    trace = new_trace_header()
    request_id = f"req-{uuid.uuid4().hex}"
    query = new_query(QUESTION, corpus["tenant"], request_id=request_id).model_dump(mode="json")
    result = run_workflow(query, trace_header=trace, timeout_s=60)
    assert result.output.get("citations"), result.output
    assert result.output["guard"]["deferred"] == ["groundedness"]
    # Then every task's process exported its invocation span and a span per step, in the caller's trace
    expect = set().union(*WORKFLOW_STEPS.values()) | set(WORKFLOW_STEPS)
    invocations = _invocations(otlp, trace, expect, counts={"guard": 3})
    assert set(WORKFLOW_STEPS) <= set(invocations), sorted(invocations)
    for function, steps in WORKFLOW_STEPS.items():
        missing = steps - _step_names(invocations[function])
        assert not missing, f"{function} sent no {sorted(missing)}: {sorted(_step_names(invocations[function]))}"
    assert len(invocations["guard"]) == 3  # input, context, output: one invocation each, one trace
    # each invocation continues the trace X-Ray sampled, Lambda's segment as its parent
    parent = trace.split("Parent=")[1].split(";")[0]
    assert {i["span"].parent_id for inv in invocations.values() for i in inv} == {parent}
    # annotated with the request, its tenant and the routing decisions ...
    (generate,) = invocations["generate"]
    attributes = generate["span"].attributes
    assert attributes["stratus.request_id"] == request_id and attributes["stratus.tenant_id"] == corpus["tenant"]
    assert attributes["gen_ai.provider.name"] == "offline" and attributes["stratus.cache_hit"] is False
    attempt = next(s for s in generate["steps"] if s.name == "provider_attempt")
    assert attempt.attributes["gen_ai.provider.name"] == "offline" and attempt.attributes["stratus.outcome"] == "ok"
    assert attempt.attributes["stratus.deployment"]
    (retrieve,) = invocations["retrieve"]
    assert retrieve["span"].attributes["stratus.request_id"] == request_id
    assert retrieve["span"].attributes["stratus.mode"] == "hybrid"
    assert {i["span"].attributes["stratus.stage"] for i in invocations["guard"]} == {"input", "context", "output"}
    # ... and never with the question's (or the answer's) text
    text = _attributes(invocations)
    assert QUESTION not in text and "rotated" not in text


def test_the_workflow_continues_the_invocations_own_trace(corpus: dict[str, Any], otlp: OTLPCollector,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from stratus.aws.workflows import run_workflow
    from stratus.workflow_state import new_query

    # Inside a Lambda invocation (the gateway's), the runtime's _X_AMZN_TRACE_ID is the trace to continue
    trace = new_trace_header()
    monkeypatch.setenv("_X_AMZN_TRACE_ID", trace)
    query = new_query("Say hello.", corpus["tenant"], mode="chat").model_dump(mode="json")
    run_workflow(query, timeout_s=60)
    invocations = _invocations(otlp, trace, WORKFLOW_STEPS["generate"] | {"generate"}, counts={"guard": 2})
    assert "generate" in invocations and len(invocations["guard"]) == 2, sorted(invocations)  # chat: no retrieval
    assert WORKFLOW_STEPS["generate"] <= _step_names(invocations["generate"])


def test_an_upload_is_ingested_with_a_span_per_step(corpus: dict[str, Any], otlp: OTLPCollector) -> None:
    # The S3 -> SQS -> Lambda run of the corpus fixture: its invocation's trace holds the ingest steps
    traces = {inv.trace_id for inv in corpus["ingest_runs"]}
    seen: set[str] = set()
    for trace in traces:
        invocations = _invocations(otlp, trace, INGEST_STEPS, wait_s=5.0)
        seen |= _step_names(invocations.get("ingest", []))
    assert INGEST_STEPS <= seen, sorted(seen)


def test_an_sqs_message_with_a_trace_header_continues_that_trace(corpus: dict[str, Any], contract_stack: Any,
                                                                 functions: dict[str, FunctionProcess],
                                                                 otlp: OTLPCollector) -> None:
    # Given a traced sender's message (AWSTraceHeader) naming the already ingested object
    trace = new_trace_header()
    body = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": contract_stack.documents_bucket},
                                "object": {"key": quote_plus(corpus["key"])}}}]}
    queue = contract_stack.resources.ref("IngestQueue", "QueueUrl")
    contract_stack.client("sqs").send_message(
        QueueUrl=queue, MessageBody=json.dumps(body),
        MessageSystemAttributes={"AWSTraceHeader": {"StringValue": trace, "DataType": "String"}})
    assert contract_stack.wait_for_ingestion(timeout=120)
    # Then the ingest process ran it in that trace (the content is unchanged: nothing is re-embedded)
    wanted = {"document", "download", "lookup", "extract", "store"}
    invocations = _invocations(otlp, trace, wanted)
    assert "ingest" in invocations, f"no ingest spans in {trace_hex(trace)}: {sorted(invocations)}"
    steps = _step_names(invocations["ingest"])
    assert wanted <= steps and "embed" not in steps, sorted(steps)
    document = next(s for i in invocations["ingest"] for s in i["steps"] if s.name == "document")
    assert document.attributes["stratus.status"] == "unchanged"
    assert document.attributes["stratus.tenant_id"] == corpus["tenant"]


def test_a_request_through_the_api_is_one_opentelemetry_trace_across_the_functions(
        corpus: dict[str, Any], contract_stack: Any, api: Any, otlp: OTLPCollector) -> None:
    import secrets

    from openai import OpenAI

    from tests.integration.gateway_support import key_for

    # Given a caller's W3C trace context, when it asks a RAG question through API Gateway and the web adapter
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    client = OpenAI(base_url=api.url + "v1", api_key=key_for(contract_stack.database_url, corpus["tenant"]),
                    max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="rag/fast", messages=[{"role": "user", "content": QUESTION}],
        extra_body={"stratus": {"cache": False}},  # an earlier test asked the same: a model call, not a hit
        extra_headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
    assert raw.parse().model_extra["citations"]
    # Then the gateway answers in the caller's trace ...
    assert raw.headers["x-trace-id"] == caller_trace
    # ... and every process flushed its spans before its invocation ended: one tree under the caller's span
    expect = {"POST /v1/chat/completions", "workflow", "guard", "retrieve", "generate", "provider_attempt",
              "lexical", "rail_injection", "rail_groundedness"}
    found = otlp.trace(caller_trace, names=expect, wait_s=20)
    names = {s.name for s in found}
    assert expect <= names, sorted(expect - names)
    ids = {s.span_id for s in found}
    roots = [s for s in found if s.parent_id not in ids]
    assert [(s.name, s.parent_id) for s in roots] == [("POST /v1/chat/completions", caller_span)], \
        [(s.name, s.parent_id, s.resource.get("stratus.function")) for s in roots]
    # each task function exported from its own process (its resource names it)
    functions_seen = {s.resource.get("stratus.function") for s in found}
    assert {"gateway", "guard", "retrieve", "generate"} <= functions_seen, functions_seen
    # groundedness (it only flags) ran in the gateway after the response, still inside the request's span
    (grounded,) = [s for s in found if s.name == "rail_groundedness"]
    assert grounded.resource.get("stratus.function") == "gateway"
    assert grounded.attributes["stratus.after_response"] is True
    # FastAPI's own request span is off (ours is the one that continues the caller's context)
    assert not [s for s in otlp.spans if s.name == "handler" or s.name.startswith("fastapi")]
    attempt = next(s for s in found if s.name == "provider_attempt")
    assert attempt.attributes["gen_ai.operation.name"] == "chat"
    assert attempt.attributes["gen_ai.provider.name"] and attempt.attributes["gen_ai.usage.output_tokens"] > 0


def test_nothing_is_sent_to_the_xray_daemon(corpus: dict[str, Any], otlp: OTLPCollector,
                                             xray: XRayCollector) -> None:
    # Every function ran above (the corpus's ingestion, the workflows, the API request) with Tracing: Active's
    # daemon address in its environment: spans went over OTLP only, no segment over UDP.
    assert {s.resource.get("stratus.function") for s in otlp.spans} >= {"ingest", "guard", "retrieve", "generate"}
    assert xray.documents == [] and xray.malformed == []
    # and every export request carried the headers each function read from OtelExporterHeadersSecretArn
    assert otlp.request_headers and all(h.get("x-stratus-tier") == OTLP_HEADERS["x-stratus-tier"]
                                        for h in otlp.request_headers)


def test_a_task_functions_spans_leave_after_its_result(corpus: dict[str, Any], functions: dict[str, FunctionProcess],
                                                       otlp: OTLPCollector) -> None:
    import time

    # Given a slow backend (each export takes half a second to answer) and a warm retrieve environment
    retrieve = functions["RetrieveFunction"]
    event = {**json.loads((ROOT / "events" / "retrieve.json").read_text()), "tenant_id": corpus["tenant"]}
    assert retrieve.invoke(event).error_type is None
    otlp.delay_s = 0.5
    try:
        # When Step Functions (here: the test) invokes it
        trace = new_trace_header()
        invocation = retrieve.invoke(event, trace_header=trace)
        assert invocation.error_type is None, invocation.body[:500]
        deadline = time.monotonic() + 10
        while invocation.completed_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        otlp.delay_s = 0.0
    # Then the result went back first; the invocation completed only when the extension's flush was done
    assert invocation.responded_at is not None and invocation.completed_at is not None
    assert invocation.completed_at - invocation.responded_at >= 0.4
    # and the spans arrived, from the function's own process, before the environment took another event
    found = otlp.trace(trace_hex(trace), names={"retrieve", "lexical"}, wait_s=5)
    assert {"retrieve", "lexical"} <= {s.name for s in found}
    assert {s.resource["stratus.function"] for s in found} == {"retrieve"}
