"""The gateway's one-time heap freeze (stratus.gateway.heap): once per process, after a collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from stratus.gateway import heap


@pytest.fixture
def fresh_process_state() -> Iterator[None]:
    # Given a process that has not frozen yet; afterwards, the test process's heap as it was
    was_frozen = heap._frozen
    heap._frozen = False
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        heap._frozen = was_frozen


def test_the_first_call_collects_then_freezes_and_later_calls_do_nothing(fresh_process_state: None) -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a reference cycle: only the cyclic collector frees it

    garbage = Node()
    freed = weakref.ref(garbage)
    del garbage  # unreachable from here on, but alive until a collection
    gc.disable()  # no automatic collection may free it first
    try:
        assert heap.freeze_once() is True
    finally:
        gc.enable()
    frozen = gc.get_freeze_count()
    # Then what survived the collection is frozen, and the cycle was freed rather than frozen with it
    assert frozen > 0 and freed() is None
    # and a second call neither collects nor freezes again
    assert heap.freeze_once() is False
    assert gc.get_freeze_count() == frozen
