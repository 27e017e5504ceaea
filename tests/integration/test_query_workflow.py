"""The query workflow: template.yaml's state machine in moto's Step Functions interpreter, calling the
local Retrieve and Generate handlers (offline provider), with the cache and the generation record."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.aws.workflows import WorkflowFailed, run_workflow
from stratus.config import load_settings
from stratus.db import generations
from stratus.db.connection import tenant_transaction
from stratus.db.records import SourceObject
from stratus.ingest.pipeline import ingest_document
from stratus.workflow_state import new_query
from stratus_tools.local.ask import ask
from stratus_tools.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "examples" / "corpus"
DATA_DIR = ROOT / ".stratus" / "test-workflow"


def _ingest(tenant_id: str, name: str, data: bytes) -> None:
    ingest_document(tenant_id, name, data, SourceObject(tenant_id=tenant_id, key=name, etag=uuid.uuid4().hex,
                                                        size=len(data)))


@pytest.fixture(scope="module")
def stack(pg_url: str) -> Iterator[LocalStack]:
    with LocalStack(load_settings(data_dir=DATA_DIR), start_pollers=False) as running:
        yield running


@pytest.fixture(scope="module")
def corpus_tenant(stack: LocalStack) -> str:
    tenant = f"wf-{uuid.uuid4().hex[:10]}"
    for path in sorted(CORPUS.iterdir()):
        if path.is_file():
            _ingest(tenant, path.name, path.read_bytes())
    return tenant


def test_a_rag_question_is_retrieved_generated_cited_and_recorded(corpus_tenant: str, db: Any) -> None:
    out = ask("How much does the Team plan cost per month?", corpus_tenant)

    assert "149 euros" in out["text"]
    assert out["offline"] is True and out["provider"] == "offline" and out["model_alias"] == "fast"
    assert [c["source_key"] for c in out["citations"]] == ["pricing.html"]
    assert f"[{out['citations'][0]['number']}]" in out["text"]
    assert out["prompt"]["name"] == "rag-answer" and len(out["prompt"]["hash"]) == 64
    assert out["usage"]["input_tokens"] > 0 and out["usage"]["output_tokens"] > 0
    # Both steps ran and reported their time; the caller measured the whole run.
    assert out["timings_ms"]["retrieve"] > 0 and out["timings_ms"]["generate"] > 0
    assert out["workflow_ms"]["wall"] >= out["workflow_ms"]["tasks"]
    with tenant_transaction(corpus_tenant, db):
        row = generations.get_generation(db, corpus_tenant, out["request_id"])
    assert row is not None and row["status"] == "ok" and row["mode"] == "rag"
    assert row["cited_chunk_ids"] == [out["citations"][0]["chunk_id"]]
    assert set(row["cited_chunk_ids"]) <= set(row["chunk_ids"])


def test_chat_mode_generates_without_retrieval(corpus_tenant: str) -> None:
    out = ask("Hello, who are you?", corpus_tenant, mode="chat")
    assert "retrieve" not in out["timings_ms"] and out["citations"] == [] and out["chunk_ids"] == []
    assert out["prompt"]["name"] == "chat"
    assert "not a language model" in out["text"]  # the offline provider says what it is


def test_a_question_the_documents_do_not_answer_is_refused(corpus_tenant: str) -> None:
    out = ask("Who painted the ceiling of the Sistine Chapel?", corpus_tenant)
    assert out["citations"] == [] and "do not answer" in out["text"]


def test_paraphrase_hits_the_cache_and_a_changed_document_misses(stack: LocalStack) -> None:
    tenant = f"wf-{uuid.uuid4().hex[:10]}"
    page = (CORPUS / "pricing.html").read_bytes()
    _ingest(tenant, "pricing.html", page)
    first = ask("How much does the Team plan cost per month?", tenant)
    again = ask("How much does the Team plan cost per month?", tenant)
    paraphrase = ask("How much is the Team plan per month?", tenant)
    different = ask("How much does the Enterprise plan cost?", tenant)
    assert first["cache"]["status"] == "miss"
    assert again["cache"]["status"] == "hit_exact" and again["usage"]["output_tokens"] == 0
    assert paraphrase["cache"]["status"] == "hit_semantic" and paraphrase["text"] == first["text"]
    assert paraphrase["cost_usd"] == 0 and paraphrase["deployment"] is None
    assert different["cache"]["status"] == "miss"

    _ingest(tenant, "pricing.html", page.replace(b"149 euros", b"189 euros"))
    changed = ask("How much does the Team plan cost per month?", tenant)
    assert changed["cache"]["status"] == "miss" and "189 euros" in changed["text"]


def test_a_bad_request_fails_the_workflow_naming_the_field(corpus_tenant: str) -> None:
    payload = new_query("What does the API answer when rate limited?", corpus_tenant).model_dump(mode="json")
    payload["messages"][0]["role"] = "robot"
    with pytest.raises(WorkflowFailed) as caught:
        run_workflow(payload)
    assert caught.value.error == "InvalidInput" and "messages.0.role" in caught.value.detail


def test_an_unknown_model_fails_with_not_found(corpus_tenant: str) -> None:
    with pytest.raises(WorkflowFailed) as caught:
        ask("What does the API answer when rate limited?", corpus_tenant, model="no-such-model")
    assert caught.value.error == "NotFound" and "no-such-model" in caught.value.detail


def test_another_tenant_gets_nothing_from_this_tenants_documents(corpus_tenant: str,
                                                                new_tenant: Callable[[], str]) -> None:
    out = ask("How much does the Team plan cost per month?", new_tenant())
    assert out["citations"] == [] and out["chunk_ids"] == [] and "149" not in out["text"]


def test_the_state_machine_comes_from_the_template_with_its_substitutions(stack: LocalStack) -> None:
    assert stack.resources is not None
    arn = stack.resources.ref("QueryStateMachine", "Arn")
    described = stack.client("stepfunctions").describe_state_machine(stateMachineArn=arn)
    assert described["type"] == "EXPRESS" and "${" not in described["definition"]
    tasks = {name: state["Resource"] for name, state in json.loads(described["definition"])["States"].items()
             if state["Type"] == "Task"}
    guard = stack.resources.ref("GuardFunction", "Arn")
    assert tasks == {"GuardInput": guard, "Retrieve": stack.resources.ref("RetrieveFunction", "Arn"),
                     "GuardContext": guard, "Generate": stack.resources.ref("GenerateFunction", "Arn"),
                     "GuardOutput": guard}


def test_an_unknown_tenant_is_not_found(stack: LocalStack) -> None:
    with pytest.raises(WorkflowFailed) as caught:
        ask("Anything?", f"nobody-{uuid.uuid4().hex[:8]}")
    assert caught.value.error == "NotFound" and "unknown tenant" in caught.value.detail


@pytest.mark.parametrize("event", ["generate_chat.json", "query_rag.json"])
def test_the_sample_events_run(stack: LocalStack, event: str) -> None:
    payload = json.loads((ROOT / "events" / event).read_text())
    payload["tenant_id"] = f"ev-{uuid.uuid4().hex[:8]}"
    payload["request_id"] = f"req-{uuid.uuid4().hex}"
    _ingest(payload["tenant_id"], "api-reference.md", (CORPUS / "api-reference.md").read_bytes())
    if payload["mode"] == "chat":  # the generate task alone, invoked like Step Functions would
        answer = stack.client("lambda").invoke(FunctionName=stack.function_name("GenerateFunction"),
                                               Payload=json.dumps(payload).encode())
        assert "FunctionError" not in answer
        out = json.loads(answer["Payload"].read())
    else:  # the workflow input
        out = run_workflow(payload).output
    assert out["request_id"] == payload["request_id"] and out["text"]
