"""The rails the gateway runs after a response (stratus.gateway.context._run_after_rails): their verdicts join
the trace's guard record, a failure or a near deadline leaves them listed as deferred, and the traced latency
leaves their time out."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any

import pytest

from stratus.gateway import context
from stratus.workflow_state import Verdict

GROUNDED = Verdict(rail="groundedness", stage="output", action="flag", score=0.2, threshold=0.498)


@pytest.fixture(autouse=True)
def no_database(monkeypatch: pytest.MonkeyPatch) -> None:
    @contextmanager
    def lease() -> Any:
        yield object()

    monkeypatch.setattr("stratus.gateway.pool.lease", lease)


def _ctx(rails: Any, *, deadline_in_s: float | None = None) -> context.RequestContext:
    ctx = context.RequestContext(request_id="r-1", route="/v1/chat/completions", method="POST")
    ctx.trace["guard"] = {"verdicts": [{"rail": "pii", "stage": "output", "action": "pass", "score": 0.0}],
                          "blocked": None, "deferred": ["groundedness"]}
    ctx.after_rails = rails
    ctx.deadline_at = None if deadline_in_s is None else time.time() + deadline_in_s
    return ctx


def test_the_verdicts_join_the_trace_and_their_time_is_left_out_of_the_latency() -> None:
    def rails(conn: Any) -> list[Verdict]:
        time.sleep(0.05)
        return [GROUNDED]

    ctx = _ctx(rails)
    context._run_after_rails(ctx)
    guard = ctx.trace["guard"]
    assert [v["rail"] for v in guard["verdicts"]] == ["pii", "groundedness"] and guard["deferred"] == []
    assert guard["verdicts"][1]["action"] == "flag" and ctx.after_rails is None
    assert ctx.timings_ms[context.AFTER_RAILS_STEP] >= 50
    assert context._latency_ms(ctx) <= ctx.elapsed_ms() - 50


def test_a_failure_leaves_the_rail_deferred_and_raises_nothing() -> None:
    def rails(conn: Any) -> list[Verdict]:
        raise RuntimeError("the embedder is gone")

    ctx = _ctx(rails)
    context._run_after_rails(ctx)
    assert ctx.trace["guard"]["deferred"] == ["groundedness"] and len(ctx.trace["guard"]["verdicts"]) == 1


def test_too_little_of_the_invocation_left_runs_nothing() -> None:
    called = []
    ctx = _ctx(lambda conn: called.append(conn) or [GROUNDED], deadline_in_s=1.5)
    context._run_after_rails(ctx)
    assert called == [] and ctx.trace["guard"]["deferred"] == ["groundedness"]
    roomy = _ctx(lambda conn: called.append(conn) or [GROUNDED], deadline_in_s=30)
    context._run_after_rails(roomy)
    assert len(called) == 1 and roomy.trace["guard"]["deferred"] == []


def test_a_rail_the_runner_does_not_know_stays_listed() -> None:
    ctx = _ctx(lambda conn: [])  # groundedness had nothing left to read: no verdict, and nothing pending
    ctx.trace["guard"]["deferred"] = ["groundedness", "some_future_rail"]
    context._run_after_rails(ctx)
    assert ctx.trace["guard"]["deferred"] == ["some_future_rail"]
