"""The after-restore hook every function registers (stratus.observability): under SnapStart each environment
is restored from one snapshot of the init, so the `random` state OpenTelemetry draws trace and span ids from
would be the same in all of them; the hook reseeds it. Run here as the Runtime Interface Client runs the
registered hooks after /runtime/restore/next (awslambdaric's lambda_runtime_hooks_runner)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import snapshot_restore_py
from aws_lambda_powertools import Logger

from stratus import observability


@pytest.fixture()
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The runtime's registry of after-restore hooks, emptied for the test and put back after it (with the
    process's record of having registered one)."""
    monkeypatch.setattr(observability, "_restore_hook_registered", False)
    registry: list[Any] = snapshot_restore_py.get_after_restore()
    saved = list(registry)
    registry.clear()
    yield registry
    registry[:] = saved


def _run_after_restore() -> None:
    for func, args, kwargs in snapshot_restore_py.get_after_restore():
        func(*args, **kwargs)


def test_the_hook_is_registered_and_a_restore_reseeds_random(hooks: list[Any]) -> None:
    logger = Logger(service="snapstart-test")
    assert observability.register_snapstart_hooks(logger) is True
    assert [func for func, _, _ in hooks] == [observability.after_restore]

    # Given two environments restored from one snapshot: the same random state in both
    random.seed(1234)
    snapshot = random.getstate()
    first = random.getrandbits(128)
    random.setstate(snapshot)
    assert random.getrandbits(128) == first  # without the hook, the second draws the same id

    # When the runtime runs the after-restore hooks in the second
    random.setstate(snapshot)
    _run_after_restore()

    # Then it draws its own
    assert random.getrandbits(128) != first


def test_without_the_hook_library_nothing_is_registered(monkeypatch: pytest.MonkeyPatch, hooks: list[Any]) -> None:
    def missing(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(observability.importlib, "import_module", missing)
    assert observability.register_snapstart_hooks(Logger(service="snapstart-test")) is False
    assert hooks == []


def test_every_function_registers_it_when_it_sets_up(hooks: list[Any]) -> None:
    observability.observe("snapstart-test")
    assert [func for func, _, _ in hooks] == [observability.after_restore]


def test_a_process_that_sets_up_several_functions_registers_it_once(hooks: list[Any]) -> None:
    # the local stack and the tests build several handlers in one process: one restore reseeds once
    observability.observe("snapstart-test")
    observability.observe("snapstart-test-2")
    assert [func for func, _, _ in hooks] == [observability.after_restore]
