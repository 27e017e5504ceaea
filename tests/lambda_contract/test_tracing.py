"""X-Ray as the deployed functions send it: one request is one trace, with a subsegment per step.

The caller's trace header goes to StartSyncExecution (`traceHeader`); the local Step Functions hands it to
each Lambda task's invocation (Lambda-Runtime-Trace-Id), as a state machine with tracing on does. Each
task's process then sends its `## handler` subsegment, with one subsegment per step nested in it, under
the caller's trace root. Ingestion traces its steps per object event; a message that carries an X-Ray
AWSTraceHeader continues its sender's trace.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest

from tests.integration.gateway_support import tenant_with_key
from tests.lambda_contract.otlp import OTLPCollector
from tests.lambda_contract.process import FunctionProcess
from tests.lambda_contract.runtime_api import Invocation, new_trace_header
from tests.lambda_contract.xray import XRayCollector, trace_root

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "examples" / "corpus" / "security-policy.md"
QUESTION = "How often are API keys rotated?"

# The steps each task function records (as `## <name>` subsegments under its `## handler`).
WORKFLOW_STEPS = {
    "guard": {"policy", "rail_injection", "rail_pii", "rail_context_injection", "rail_canary", "rail_groundedness",
              "rail_toxicity"},
    "retrieve": {"embed_query", "filters", "lexical", "dense", "fusion", "fetch", "rerank"},
    "generate": {"prompt", "cache_lookup", "model_call", "provider_attempt", "record"},
}
INGEST_STEPS = {"document", "download", "lookup", "extract", "chunk", "embed", "store"}


def _names(steps: set[str]) -> set[str]:
    return {f"## {s}" for s in steps} | {"## handler"}


def _handlers(xray: XRayCollector, trace_header: str, expect: set[str], wait_s: float = 20.0
              ) -> dict[str, list[dict[str, Any]]]:
    """The trace's `## handler` subsegments by the function's service (Powertools annotates `Service`),
    each with every subsegment under it flattened into `steps`; waits until the `expect` names arrived."""
    xray.for_trace(trace_header, names=expect, wait_s=wait_s)
    root = trace_root(trace_header)
    tops = [d for d in list(xray.documents) if d.get("trace_id") == root]
    parent: dict[str, str | None] = {}
    docs: dict[str, dict[str, Any]] = {}

    def walk(doc: dict[str, Any], up: str | None) -> None:
        docs[doc["id"]] = doc
        parent[doc["id"]] = up or doc.get("parent_id")
        for sub in doc.get("subsegments") or []:
            walk(sub, doc["id"])

    for top in tops:
        walk(top, None)
    handlers: dict[str, list[dict[str, Any]]] = {}
    for doc in docs.values():
        if doc.get("name") == "## handler":
            service = (doc.get("annotations") or {}).get("Service", "?")
            handlers.setdefault(service, []).append({**doc, "steps": []})
    by_id = {h["id"]: h for hs in handlers.values() for h in hs}
    for doc_id, doc in docs.items():  # a step belongs to its nearest `## handler` (streamed ones too)
        up = parent.get(doc_id)
        while up is not None and up not in by_id:
            up = parent.get(up)
        if up is not None:
            by_id[up]["steps"].append(doc)
    return handlers


def _step_names(handlers: list[dict[str, Any]]) -> set[str]:
    return {s["name"].removeprefix("## ") for h in handlers for s in h["steps"]}


def _annotations(handlers: dict[str, list[dict[str, Any]]]) -> str:
    return json.dumps([d.get("annotations") for hs in handlers.values() for h in hs for d in [h, *h["steps"]]])


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
                                                                      xray: XRayCollector) -> None:
    from stratus.aws.workflows import run_workflow
    from stratus.workflow_state import new_query

    # Given a caller's trace header, when it runs a RAG question through the workflow (StartSyncExecution)
    trace = new_trace_header()
    request_id = f"req-{uuid.uuid4().hex}"
    query = new_query(QUESTION, corpus["tenant"], request_id=request_id).model_dump(mode="json")
    result = run_workflow(query, trace_header=trace, timeout_s=60)
    assert result.output.get("citations"), result.output
    # Then every task's process sent its handler and per-step subsegments under the caller's trace root
    expect = set().union(*(_names(steps) for steps in WORKFLOW_STEPS.values()))
    handlers = _handlers(xray, trace, expect)
    assert set(WORKFLOW_STEPS) <= set(handlers), sorted(handlers)
    for service, steps in WORKFLOW_STEPS.items():
        missing = steps - _step_names(handlers[service])
        assert not missing, f"{service} sent no {sorted(missing)}: {sorted(_step_names(handlers[service]))}"
    assert len(handlers["guard"]) == 3  # input, context, output: one invocation each, one trace
    # annotated with the request, its tenant and the routing decisions (indexed, searchable) ...
    (generate,) = handlers["generate"]
    assert generate["annotations"]["request_id"] == request_id
    assert generate["annotations"]["tenant_id"] == corpus["tenant"]
    assert generate["annotations"]["provider"] == "offline" and generate["annotations"]["cache_hit"] is False
    attempt = next(s for s in generate["steps"] if s["name"] == "## provider_attempt")
    assert attempt["annotations"]["provider"] == "offline" and attempt["annotations"]["outcome"] == "ok"
    assert attempt["annotations"]["deployment"]
    (retrieve,) = handlers["retrieve"]
    assert retrieve["annotations"]["request_id"] == request_id and retrieve["annotations"]["mode"] == "hybrid"
    assert {h["annotations"]["stage"] for h in handlers["guard"]} == {"input", "context", "output"}
    # ... and never with the question's (or the answer's) text
    annotations = _annotations(handlers)
    assert QUESTION not in annotations and "rotated" not in annotations


def test_the_workflow_continues_the_invocations_own_trace(corpus: dict[str, Any], xray: XRayCollector,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from stratus.aws.workflows import run_workflow
    from stratus.workflow_state import new_query

    # Inside a Lambda invocation (the gateway's), the runtime's _X_AMZN_TRACE_ID is the trace to continue
    trace = new_trace_header()
    monkeypatch.setenv("_X_AMZN_TRACE_ID", trace)
    query = new_query("Say hello.", corpus["tenant"], mode="chat").model_dump(mode="json")
    run_workflow(query, timeout_s=60)
    handlers = _handlers(xray, trace, _names(WORKFLOW_STEPS["generate"]))
    assert "generate" in handlers and len(handlers["guard"]) == 2, sorted(handlers)  # chat: no retrieval
    assert WORKFLOW_STEPS["generate"] <= _step_names(handlers["generate"])


def test_an_upload_is_ingested_with_a_subsegment_per_step(corpus: dict[str, Any], xray: XRayCollector) -> None:
    # The S3 -> SQS -> Lambda run of the corpus fixture: its invocation's trace holds the ingest steps
    traces = {inv.trace_id for inv in corpus["ingest_runs"]}
    seen: set[str] = set()
    for trace in traces:
        handlers = _handlers(xray, trace, _names(INGEST_STEPS), wait_s=5.0)
        seen |= _step_names(handlers.get("ingest", []))
    assert INGEST_STEPS <= seen, sorted(seen)


def test_an_sqs_message_with_a_trace_header_continues_that_trace(corpus: dict[str, Any], contract_stack: Any,
                                                                 functions: dict[str, FunctionProcess],
                                                                 xray: XRayCollector) -> None:
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
    handlers = _handlers(xray, trace, _names({"document", "download", "lookup", "extract", "store"}))
    assert "ingest" in handlers, f"no ingest subsegments in {trace_root(trace)}: {sorted(handlers)}"
    steps = _step_names(handlers["ingest"])
    assert {"document", "download", "lookup", "extract", "store"} <= steps and "embed" not in steps, sorted(steps)
    document = next(s for h in handlers["ingest"] for s in h["steps"] if s["name"] == "## document")
    assert document["annotations"]["status"] == "unchanged"
    assert document["annotations"]["tenant_id"] == corpus["tenant"]


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
              "lexical", "rail_injection"}
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
    # the gateway's X-Ray `## handler` step opens no OpenTelemetry span (no stray trace per request), and
    # FastAPI's own request span is off (ours is the one that continues the caller's context)
    assert not [s for s in otlp.spans if s.name == "handler" or s.name.startswith("fastapi")]
    attempt = next(s for s in found if s.name == "provider_attempt")
    assert attempt.attributes["gen_ai.operation.name"] == "chat"
    assert attempt.attributes["gen_ai.provider.name"] and attempt.attributes["gen_ai.usage.output_tokens"] > 0
