"""One pipeline, two copies of its order: stratus.query.STEPS and the query workflow's ASL
(infra/statemachines/query.asl.json). The ASL is walked from StartAt through its Choice states (the
request's mode and the input rails' verdict) to the task states a request visits; their order must be
STEPS for RAG, STEPS without retrieve and guard_context for plain chat, guard_input alone for a blocked
request. The in-process runners (plain chat; the steps before a stream) must call the same steps in the
same order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stratus import query
from stratus.workflow_state import GenerateTask, GuardState, Verdict

ASL = Path(__file__).resolve().parents[2] / "infra" / "statemachines" / "query.asl.json"
TASKS = {"${RetrieveFunctionArn}": "retrieve", "${GenerateFunctionArn}": "generate"}


def step_of(state: dict[str, Any]) -> str:
    """The pipeline step a Task state runs: by its function, and for the guard function by its stage."""
    if state["Resource"] == "${GuardFunctionArn}":
        return query.GUARD_STAGES[state["Parameters"]["stage"]]
    return TASKS[state["Resource"]]


def _value(data: dict[str, Any], path: str) -> Any:
    for part in path.removeprefix("$.").split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _matches(rule: dict[str, Any], data: dict[str, Any]) -> bool:
    value = _value(data, rule["Variable"])
    if "IsNull" in rule:
        return (value is None) == rule["IsNull"]
    if "StringEquals" in rule:
        return value == rule["StringEquals"]
    raise AssertionError(f"a Choice rule this walk does not know: {rule}")


def workflow_steps(mode: str, *, blocked: bool = False) -> list[str]:
    """The steps the ASL runs, in order, for a request of `mode` whose tasks all succeed."""
    asl = json.loads(ASL.read_text(encoding="utf-8"))
    states = asl["States"]
    data = {"mode": mode, "guard": {"blocked": {"rail": "injection"} if blocked else None}}
    name, seen = asl["StartAt"], []
    while name is not None:
        state = states[name]
        if state["Type"] == "Task":
            seen.append(step_of(state))
            assert all(states[c["Next"]]["Type"] == "Fail" for c in state.get("Catch", ())), name
            name = None if state.get("End") else state["Next"]
        elif state["Type"] == "Choice":
            name = next((c["Next"] for c in state["Choices"] if _matches(c, data)), state.get("Default"))
        elif state["Type"] in ("Succeed", "Fail"):
            name = None
        else:
            raise AssertionError(f"a state type this walk does not know: {state['Type']} ({name})")
    return seen


def test_the_workflow_runs_the_pipelines_steps_in_its_order() -> None:
    assert workflow_steps("rag") == list(query.STEPS)
    assert workflow_steps("chat") == list(query.steps_for("chat"))
    assert workflow_steps("chat") == [s for s in query.STEPS if s not in query.RAG_ONLY]
    assert workflow_steps("rag", blocked=True) == workflow_steps("chat", blocked=True) == ["guard_input"]


def test_every_step_is_a_function_of_the_pipeline() -> None:
    assert all(callable(getattr(query, s)) for s in query.STEPS)
    assert set(query.GUARD_STAGES.values()) == set(query.GUARD_STEPS) <= set(query.STEPS)
    assert set(query.TIMING) == set(query.STEPS)


def _task(mode: str) -> GenerateTask:
    return GenerateTask(request_id="r-1", tenant_id="acme", mode=mode,
                        messages=[{"role": "user", "content": "What is the refund window?"}],
                        query="What is the refund window?" if mode == "rag" else None)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every step replaced by one that records its name and passes the request through."""
    calls: list[str] = []

    def recorder(name: str) -> Any:
        def step(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return args[-1] if name == "guard_output" else args[0]
        return step

    for name in query.STEPS:
        monkeypatch.setattr(query, name, recorder(name))
    return calls


@pytest.mark.parametrize("mode", ["chat", "rag"])
def test_in_process_runs_the_same_steps_in_the_same_order(recorded: list[str], mode: str) -> None:
    timed: list[str] = []
    hooks = query.Hooks(step=lambda name, started: timed.append(name))
    query.run_in_process(_task(mode), conn=None, settings=None, router=None, known=None,  # type: ignore[arg-type]
                         hooks=hooks)
    assert recorded == workflow_steps(mode)
    assert timed == [query.TIMING[s] for s in recorded]


@pytest.mark.parametrize("mode", ["chat", "rag"])
def test_a_stream_starts_after_the_steps_before_generate(recorded: list[str], mode: str) -> None:
    query.before_stream(_task(mode), conn=None, settings=None)  # type: ignore[arg-type]
    steps = workflow_steps(mode)
    assert recorded == steps[:steps.index("generate")]


def test_a_blocked_request_stops_after_the_input_rails(recorded: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    verdict = Verdict(rail="injection", stage="input", action="block", score=1.0)

    def block(request: Any, **_: Any) -> Any:
        recorded.append("guard_input")
        return request.model_copy(update={"guard": GuardState(policy={}, verdicts=[verdict], blocked=verdict)})

    monkeypatch.setattr(query, "guard_input", block)
    with pytest.raises(query.Blocked):
        query.run_in_process(_task("rag"), conn=None, settings=None, router=None, known=None)  # type: ignore[arg-type]
    assert recorded == workflow_steps("rag", blocked=True)
