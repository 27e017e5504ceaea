"""Steps of the library's work as X-Ray subsegments, when a traced handler asked for them.

    from stratus.spans import span

    with span("lexical", tenant_id=tenant) as step:   # "## lexical" under the handler's subsegment
        ...
        step.annotate(candidates=len(hits))

This module imports neither the X-Ray SDK nor Powertools: until `stratus.observability.observe` installs
its Tracer's provider (tracing on, i.e. in Lambda with `Tracing: Active`), `span` and `annotate` do
nothing, so the CLI, the local stack and the tests pay nothing for them. Annotations are indexed by X-Ray
(and searchable in filter expressions): ids, modes, names, counts and flags only, never prompt, answer or
document text. A None value is left out.

`trace_header()` is what a downstream call continues the trace with (the gateway passes it to
StartSyncExecution as `traceHeader`, so a request and its workflow's tasks are one trace).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Annotation = str | int | float | bool | None

_provider: Any = None  # the Powertools Tracer's provider (aws_xray_sdk's recorder) once a handler installed it


def install(provider: Any) -> None:
    """Record spans through `provider` (a Powertools Tracer's `provider`); None turns them off again."""
    global _provider
    _provider = provider


def enabled() -> bool:
    return _provider is not None


class Span:
    """One open step; `annotate` adds what is learned inside it (a cache hit, an outcome)."""

    __slots__ = ("_subsegment",)

    def __init__(self, subsegment: Any = None) -> None:
        self._subsegment = subsegment

    def annotate(self, **annotations: Annotation) -> None:
        if self._subsegment is not None:
            _put(self._subsegment, annotations)


_OFF = Span()


@contextmanager
def span(name: str, **annotations: Annotation) -> Iterator[Span]:
    """A `## name` subsegment around the block, annotated; a no-op Span when tracing is off."""
    with open_span(_provider, name, annotations) as opened:
        yield opened


@contextmanager
def open_span(provider: Any, name: str, annotations: dict[str, Annotation]) -> Iterator[Span]:
    """`span` through a given provider (Observability.step passes its own Tracer's)."""
    if provider is None:
        yield _OFF
        return
    with provider.in_subsegment(f"## {name}") as subsegment:
        opened = Span(subsegment)
        opened.annotate(**annotations)
        yield opened  # an exception inside is recorded on the subsegment by the SDK, then re-raised


def annotate(**annotations: Annotation) -> None:
    """Annotates the innermost open subsegment (a handler's `## handler` when no span is open)."""
    annotate_with(_provider, annotations)


def annotate_with(provider: Any, annotations: dict[str, Annotation]) -> None:
    if provider is None:
        return
    try:
        entity = provider.get_trace_entity()
    except Exception:  # no segment in this context (e.g. a thread the SDK has no context for)
        return
    _put(entity, annotations)


def _put(entity: Any, annotations: dict[str, Annotation]) -> None:
    for key, value in annotations.items():
        if value is None:
            continue
        try:
            entity.put_annotation(key, value)
        except Exception:  # Lambda's own (facade) segment refuses changes; a step never fails on tracing
            return


def trace_header() -> str | None:
    """The X-Ray header of the work in progress, for the next hop: `Root=...;Parent=<current subsegment>;
    Sampled=...` when a traced handler is running, else Lambda's `_X_AMZN_TRACE_ID` for this invocation
    (set per invocation by the runtime; None outside Lambda)."""
    if _provider is not None:
        try:
            entity = _provider.get_trace_entity()
            root, parent, sampled = entity.trace_id, entity.id, entity.sampled
        except Exception:
            root = None
        if root and parent and parent.strip("0"):  # a no-op (unsampled, SDK off) entity has an all-zero id
            return f"Root={root};Parent={parent};Sampled={1 if sampled else 0}"
    # A runtime variable, not a setting (it changes with every invocation): read here, not in config.
    return os.environ.get("_X_AMZN_TRACE_ID") or None
