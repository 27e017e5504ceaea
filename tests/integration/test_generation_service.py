"""The generate path end to end below the workflow: prompt registry, cache, routed calls through the real
SDKs to loopback provider servers with injected faults, and the generation record."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stratus.config import load_settings
from stratus.db import generations
from stratus.db.connection import tenant_transaction
from stratus.generation.service import generate
from stratus.llm import errors
from stratus.llm.catalog import parse_catalog
from stratus.llm.router import RetryPolicy, Router
from stratus.workflow_state import GenerateTask, new_query
from tests.support.upstreams import AnthropicUpstream, Fault, OpenAIUpstream


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[OpenAIUpstream, AnthropicUpstream]]:
    with OpenAIUpstream() as openai_up, AnthropicUpstream() as anthropic_up:
        yield openai_up, anthropic_up


@pytest.fixture
def ups(upstreams: tuple[OpenAIUpstream, AnthropicUpstream]) -> tuple[OpenAIUpstream, AnthropicUpstream]:
    for up in upstreams:
        up.clear()
    return upstreams


@pytest.fixture
def router(ups: tuple[OpenAIUpstream, AnthropicUpstream]) -> Router:
    openai_up, anthropic_up = ups
    catalog = parse_catalog({
        "default_alias": "fast",
        "deployments": {
            "loop-openai": {"provider": "openai", "model": "gpt-loop", "base_url": openai_up.base_url,
                            "api_key": "sk-a", "timeout_s": 0.5, "price": {"input": 2.0, "output": 8.0}},
            "loop-anthropic": {"provider": "anthropic", "model": "claude-loop", "base_url": anthropic_up.base_url,
                               "api_key": "sk-b", "timeout_s": 0.5, "price": {"input": 1.0, "output": 5.0}},
        },
        "aliases": {"fast": ["loop-openai", "loop-anthropic"]},
    })
    return Router(catalog, policy=RetryPolicy(attempts=1, base_backoff_s=0.01, max_backoff_s=0.05, deadline_s=5))


def _chat(tenant_id: str, question: str) -> GenerateTask:
    query = new_query(question, tenant_id, mode="chat", request_id=f"r-{uuid.uuid4().hex}")
    return GenerateTask.model_validate(query.model_dump())


def _row(db: Any, tenant_id: str, request_id: str) -> dict[str, Any]:
    with tenant_transaction(tenant_id, db):
        row = generations.get_generation(db, tenant_id, request_id)
    assert row is not None
    return row


def test_server_errors_fall_back_to_the_next_provider_and_only_the_answer_is_billed(
        router: Router, ups: tuple[OpenAIUpstream, AnthropicUpstream], db: Any, tenant_id: str) -> None:
    openai_up, anthropic_up = ups
    openai_up.inject(Fault.status(500), Fault.status(500))
    task = _chat(tenant_id, "Summarise our refund policy in one line")

    out = generate(task, router=router, conn=db, settings=load_settings(cache_enabled=False))

    assert out.deployment == "loop-anthropic" and out.provider == "anthropic" and not out.offline
    assert out.text.startswith("Echo: ")
    assert [(a["deployment"], a["outcome"]) for a in out.attempts] == [
        ("loop-openai", "server_error"), ("loop-openai", "server_error"), ("loop-anthropic", "ok")]
    assert len(openai_up.requests) == 2 and len(anthropic_up.requests) == 1
    # Billed at the Anthropic deployment's price for the Anthropic usage, nothing for the failed attempts.
    assert out.usage.input_tokens > 0
    expected = (out.usage.input_tokens * 1.0 + out.usage.output_tokens * 5.0) / 1e6
    assert out.cost_usd == pytest.approx(expected)
    row = _row(db, tenant_id, task.request_id)
    assert row["status"] == "ok" and row["deployment"] == "loop-anthropic"
    assert float(row["cost_usd"]) == pytest.approx(expected)
    assert row["prompt_name"] == "chat" and row["prompt_hash"] == out.prompt.hash
    assert [a["outcome"] for a in row["attempts"]] == ["server_error", "server_error", "ok"]


@pytest.mark.parametrize(("fault", "code", "answered_by"), [
    (Fault.status(429, retry_after=0.01), "rate_limited", "loop-openai"),  # waited retry-after, retried
    (Fault.status(529), "overloaded", "loop-openai"),
    (Fault.reset(), "connection_error", "loop-openai"),
    (Fault.malformed(), "malformed_response", "loop-openai"),
    (Fault.delay(2.0), "timeout", "loop-anthropic"),  # a timeout falls back at once
])
def test_each_fault_ends_in_a_retry_or_fallback_that_answers(
        router: Router, ups: tuple[OpenAIUpstream, AnthropicUpstream], db: Any, tenant_id: str,
        fault: Fault, code: str, answered_by: str) -> None:
    openai_up, _ = ups
    openai_up.inject(fault)
    out = generate(_chat(tenant_id, f"question {uuid.uuid4().hex}"), router=router, conn=db,
                   settings=load_settings(cache_enabled=False))
    # The answer is the upstream's real answer, never an empty or malformed success.
    assert out.text.startswith("Echo: question")
    assert [(a["deployment"], a["outcome"]) for a in out.attempts] == [("loop-openai", code), (answered_by, "ok")]
    row = _row(db, tenant_id, out.request_id)
    assert row["deployment"] == answered_by and row["attempts"][0]["outcome"] == code


def test_every_deployment_failing_raises_a_typed_error_and_records_it_unbilled(
        router: Router, ups: tuple[OpenAIUpstream, AnthropicUpstream], db: Any, tenant_id: str) -> None:
    openai_up, anthropic_up = ups
    openai_up.inject(*[Fault.status(503)] * 2)
    anthropic_up.inject(*[Fault.status(529)] * 2)
    task = _chat(tenant_id, "anything")
    with pytest.raises(errors.AllDeploymentsFailed) as caught:
        generate(task, router=router, conn=db, settings=load_settings(cache_enabled=False))
    assert [a.outcome for a in caught.value.attempts] == ["overloaded"] * 4
    row = _row(db, tenant_id, task.request_id)
    assert row["status"] == "failed" and row["error_code"] == "all_deployments_failed"
    assert float(row["cost_usd"]) == 0 and row["input_tokens"] == 0


def test_a_bad_request_is_not_retried_anywhere(
        router: Router, ups: tuple[OpenAIUpstream, AnthropicUpstream], db: Any, tenant_id: str) -> None:
    openai_up, anthropic_up = ups
    openai_up.inject(Fault.status(400))
    with pytest.raises(errors.InvalidRequest):
        generate(_chat(tenant_id, "bad"), router=router, conn=db, settings=load_settings(cache_enabled=False))
    assert len(openai_up.requests) == 1 and anthropic_up.requests == []


def test_context_length_falls_back_to_the_larger_window(
        router: Router, ups: tuple[OpenAIUpstream, AnthropicUpstream], db: Any, tenant_id: str) -> None:
    openai_up, _ = ups
    openai_up.inject(Fault.context_length())
    out = generate(_chat(tenant_id, "a very long question"), router=router, conn=db,
                   settings=load_settings(cache_enabled=False))
    assert [a["outcome"] for a in out.attempts] == ["context_length_exceeded", "ok"]


def test_a_repeated_question_is_served_from_cache_with_zero_provider_tokens(
        router: Router, ups: tuple[OpenAIUpstream, AnthropicUpstream], db: Any, tenant_id: str,
        new_tenant: Callable[[], str]) -> None:
    openai_up, _ = ups
    settings = load_settings()
    first = generate(_chat(tenant_id, "What is our support email?"), router=router, conn=db, settings=settings)
    again = generate(_chat(tenant_id, "what is our  support email?"), router=router, conn=db, settings=settings)
    assert first.cache.status == "miss" and first.usage.output_tokens > 0
    assert again.cache.status == "hit_exact" and again.text == first.text
    assert again.usage.total_tokens == 0 and again.cost_usd == 0 and again.deployment is None
    assert len(openai_up.requests) == 1
    # Another tenant asking the same never sees this tenant's entry.
    other = new_tenant()
    theirs = generate(_chat(other, "What is our support email?"), router=router, conn=db, settings=settings)
    assert theirs.cache.status == "miss" and len(openai_up.requests) == 2


def test_tenant_override_reorders_deployments(
        router: Router, ups: tuple[OpenAIUpstream, AnthropicUpstream], db: Any, tenant_id: str) -> None:
    openai_up, anthropic_up = ups
    with tenant_transaction(tenant_id, db):
        generations.set_model_override(db, tenant_id, "fast", ["loop-anthropic", "loop-openai"])
    out = generate(_chat(tenant_id, "who answers?"), router=router, conn=db,
                   settings=load_settings(cache_enabled=False))
    assert out.deployment == "loop-anthropic" and openai_up.requests == []


def test_cached_answers_never_cross_an_embedding_model_switch(
        router: Router, ups: tuple[OpenAIUpstream, AnthropicUpstream], db: Any, tenant_id: str) -> None:
    from stratus.reindex import job
    from tests.support import second_model

    openai_up, _ = ups
    settings = load_settings()
    first = generate(_chat(tenant_id, "Where is the heat pump manual?"), router=router, conn=db, settings=settings)
    assert first.cache.status == "miss"
    with second_model.registered() as model_b:
        # Given the tenant moved to another embedding model (no chunks: nothing to embed, it switches at once)
        job.start(None, tenant_id, model_b, settings)
        assert job.run(None, tenant_id, settings).query_model == model_b
        # Then the answer cached under the old model is not served
        moved = generate(_chat(tenant_id, "Where is the heat pump manual?"), router=router, conn=db, settings=settings)
        assert moved.cache.status == "miss" and len(openai_up.requests) == 2
        again = generate(_chat(tenant_id, "Where is the heat pump manual?"), router=router, conn=db, settings=settings)
        assert again.cache.status == "hit_exact"
        # A near-duplicate finds it semantically: the question embedded with the new model, compared in its space
        near = generate(_chat(tenant_id, "where is the heat pump manual"), router=router, conn=db, settings=settings)
        assert near.cache.status == "hit_semantic" and len(openai_up.requests) == 2
        # And after a rollback the old model's entry serves again
        job.rollback(None, tenant_id, settings)
        back = generate(_chat(tenant_id, "Where is the heat pump manual?"), router=router, conn=db, settings=settings)
        assert back.cache.status == "hit_exact" and back.text == first.text and len(openai_up.requests) == 2
