"""Citation markers: [n] in an answer refers to the n-th passage the prompt numbered."""

from __future__ import annotations

import re

from stratus.llm.types import ContextPassage
from stratus.workflow_state import Citation

# [3], [1, 2], [1][2] and [1-3] (a range) all count; anything else in brackets is left alone.
_MARKER = re.compile(r"\[(\d{1,3}(?:\s*[-–,]\s*\d{1,3})*)\]")


def cited_numbers(text: str) -> list[int]:
    """The passage numbers an answer cites, in order of first appearance."""
    seen: dict[int, None] = {}
    for match in _MARKER.finditer(text):
        for part in re.split(r"\s*,\s*", match.group(1)):
            bounds = re.split(r"\s*[-–]\s*", part)
            low, high = int(bounds[0]), int(bounds[-1])
            if high - low > 20:  # "[1-300]" is not a citation
                continue
            for n in range(low, high + 1):
                seen.setdefault(n, None)
    return list(seen)


def citations_for(text: str, passages: list[ContextPassage]) -> list[Citation]:
    """Citations for the markers that name a passage; a number with no passage is ignored, not invented."""
    by_number = {p.number: p for p in passages}
    return [
        Citation(number=n, chunk_id=p.chunk_id, document_id=p.document_id, document_version=p.document_version,
                 source_key=p.source_key, title=p.title, score=p.score)
        for n in cited_numbers(text) if (p := by_number.get(n)) is not None
    ]
