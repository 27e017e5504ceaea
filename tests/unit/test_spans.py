"""stratus.spans: library steps as X-Ray subsegments, only when a traced handler installed a provider."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from stratus import spans


class FakeEntity:
    def __init__(self, name: str, trace_id: str = "1-5759e988-bd862e3fe1be46a994272793", entity_id: str = "",
                 sampled: bool = True) -> None:
        self.name = name
        self.trace_id = trace_id
        self.id = entity_id or f"{abs(hash(name)) % 10**16:016d}"
        self.sampled = sampled
        self.annotations: dict[str, Any] = {}
        self.error: BaseException | None = None

    def put_annotation(self, key: str, value: Any) -> None:
        self.annotations[key] = value


class FakeRecorder:
    """What stratus.spans uses of aws_xray_sdk's recorder: in_subsegment and get_trace_entity."""

    def __init__(self) -> None:
        self.stack = [FakeEntity("## handler", entity_id="aaaaaaaaaaaaaaaa")]
        self.closed: list[FakeEntity] = []

    @contextmanager
    def in_subsegment(self, name: str) -> Iterator[FakeEntity]:
        sub = FakeEntity(name)
        self.stack.append(sub)
        try:
            yield sub
        except BaseException as err:
            sub.error = err
            raise
        finally:
            self.closed.append(self.stack.pop())

    def get_trace_entity(self) -> FakeEntity:
        return self.stack[-1]


@pytest.fixture
def recorder() -> Iterator[FakeRecorder]:
    fake = FakeRecorder()
    spans.install(fake)
    yield fake
    spans.install(None)


def test_spans_do_nothing_until_a_provider_is_installed() -> None:
    spans.install(None)
    with spans.span("lexical", tenant_id="acme") as step:
        step.annotate(candidates=3)  # a no-op, not an error
    spans.annotate(request_id="req-1")
    assert not spans.enabled()


def test_a_span_is_a_named_annotated_subsegment(recorder: FakeRecorder) -> None:
    with spans.span("lexical", tenant_id="acme", mode="hybrid", skipped=None) as step:
        step.annotate(candidates=3, exact=True)
    (closed,) = recorder.closed
    assert closed.name == "## lexical"
    # None values are left out; the rest are X-Ray annotations
    assert closed.annotations == {"tenant_id": "acme", "mode": "hybrid", "candidates": 3, "exact": True}


def test_spans_nest_and_annotate_goes_to_the_innermost(recorder: FakeRecorder) -> None:
    spans.annotate(request_id="req-1")  # no span open: the handler's subsegment
    with spans.span("model_call"), spans.span("provider_attempt", provider="offline"):
        spans.annotate(outcome="ok")
    assert recorder.stack[0].annotations == {"request_id": "req-1"}
    assert [e.name for e in recorder.closed] == ["## provider_attempt", "## model_call"]
    assert recorder.closed[0].annotations == {"provider": "offline", "outcome": "ok"}


def test_an_error_inside_a_span_is_recorded_and_propagates(recorder: FakeRecorder) -> None:
    with pytest.raises(ValueError, match="boom"), spans.span("extract"):
        raise ValueError("boom")
    assert isinstance(recorder.closed[0].error, ValueError)


def test_an_entity_that_refuses_annotations_never_fails_the_step(recorder: FakeRecorder) -> None:
    def refuse(key: str, value: Any) -> None:
        raise RuntimeError("FacadeSegmentMutationException")

    recorder.stack[0].put_annotation = refuse  # type: ignore[method-assign]
    spans.annotate(tenant_id="acme")  # swallowed


def test_trace_header_names_the_current_subsegment_as_parent(recorder: FakeRecorder) -> None:
    with spans.span("workflow"):
        current = recorder.stack[-1]
        assert spans.trace_header() == f"Root={current.trace_id};Parent={current.id};Sampled=1"


def test_trace_header_falls_back_to_lambdas_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    spans.install(None)
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    assert spans.trace_header() is None
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
    assert spans.trace_header() == header
    # an unsampled no-op entity (all-zero id) is no parent either
    fake = FakeRecorder()
    fake.stack = [FakeEntity("dummy", entity_id="0000000000000000", sampled=False)]
    spans.install(fake)
    try:
        assert spans.trace_header() == header
    finally:
        spans.install(None)


def test_observability_step_uses_its_own_tracer() -> None:
    from stratus.observability import Observability

    fake = FakeRecorder()
    obs = Observability("t", logger=None, metrics=None, tracer=type("T", (), {"provider": fake})(),  # type: ignore[arg-type]
                        emit_metrics=False)
    with obs.step("migrate", tenant_id="acme") as step:
        step.annotate(applied=2)
    obs.annotate(request_id="req-1")
    assert fake.closed[0].name == "## migrate" and fake.closed[0].annotations == {"tenant_id": "acme", "applied": 2}
    assert fake.stack[0].annotations == {"request_id": "req-1"}
    untraced = Observability("t", logger=None, metrics=None, tracer=None, emit_metrics=False)  # type: ignore[arg-type]
    with untraced.step("migrate") as step:
        step.annotate(applied=2)


def test_each_provider_attempt_is_a_span_with_its_deployment_and_outcome(recorder: FakeRecorder) -> None:
    from stratus.llm import errors
    from stratus.llm.types import Usage
    from tests.unit.test_router import REQUEST, make_router

    router, _, _ = make_router({"primary": [errors.ServerError("boom", status=500), "timeout"],
                                "secondary": [Usage(input_tokens=1, output_tokens=1)]})
    router.complete("fast", REQUEST)
    attempts = [(e.name, e.annotations) for e in recorder.closed]
    assert attempts == [
        ("## provider_attempt", {"provider": "openai", "deployment": "primary", "model": "gpt-a",
                                 "outcome": "server_error", "status": 500}),
        ("## provider_attempt", {"provider": "openai", "deployment": "primary", "model": "gpt-a",
                                 "outcome": "timeout"}),
        ("## provider_attempt", {"provider": "anthropic", "deployment": "secondary", "model": "claude-b",
                                 "outcome": "ok"}),
    ]


def test_the_library_steps_import_neither_powertools_nor_the_xray_sdk() -> None:
    # The modules that open spans on the request path: importing them costs no tracing import.
    code = ("import sys, stratus.spans, stratus.retrieval.service, stratus.llm.router, stratus.guard.rails, "
            "stratus.ingest.pipeline, stratus.generation.service; "
            "print(sorted(m for m in ('aws_xray_sdk', 'aws_lambda_powertools') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
