"""`stratus eval guard --rail indirect`: the indirect-injection detector on held-out spliced sets.

Datasets (all scored at the artifact's threshold, as the context and tool rails use it):
- spliced-documents / spliced-tool-results: test-split documents, clean and with an agentdojo payload
  spliced in, as plain chunks or as JSON tool results (evals/guard/indirect_spliced.jsonl);
- ipi-coding-agent: inspect-evals' coding-agent issue texts and files, benign and attacked, as written.
None of these sources was used for training or for the threshold. Kept apart from stratus_tools.guard.scan's
direct-injection section (scan only registers the rail), so the two can change independently.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any


def check(text: str, stem: Path | None = None) -> Any:
    from stratus_tools.guard.scan import RailResult

    assessed = _detector(stem).assess([text])[0]
    return RailResult("flag" if assessed.flagged else "pass", assessed.score, {"window": assessed.window})


@functools.cache
def _detector(stem: Path | None) -> Any:
    """The default detector, or an artifact measured beside it (indirect-v3: docs/guard.md)."""
    from stratus.guard.indirect import IndirectDetector, get_detector

    return get_detector() if stem is None else IndirectDetector(stem)


def load(stem: Path | None = None) -> None:
    from stratus.embeddings import get_embedder
    from stratus.guard.indirect import EMBEDDER

    _detector(stem).model  # noqa: B018 - reads the artifact
    get_embedder(EMBEDDER).embed(["warm up"])


def datasets(every: int = 1) -> dict[str, tuple[list[str], list[bool]]]:
    """The held-out datasets as (texts, labels); `every` > 1 keeps every n-th clean/attacked pair (a quick
    sample for the regression test)."""
    from stratus_tools.guard import indirect_sets as S

    rows = S.load("test")
    pairs = [r for r in rows if r["doc_source"] != "ipi_coding_agent"]
    kept = [r for r in pairs if int(r["id"].split("/")[-2]) % every == 0]
    out = {
        "spliced-documents": _texts([r for r in kept if r["channel"] == "document"]),
        "spliced-tool-results": _texts([r for r in kept if r["channel"] == "tool"]),
        "ipi-coding-agent": _texts([r for r in rows if r["doc_source"] == "ipi_coding_agent"]),
    }
    return out


def _texts(rows: list[dict[str, Any]]) -> tuple[list[str], list[bool]]:
    return [r["text"] for r in rows], [bool(r["label"]) for r in rows]


def evaluate(every: int = 1, stem: Path | None = None) -> list[Any]:
    """The default detector's measurements, or with `stem` an other artifact's, its datasets named
    "<stem name>/<dataset>" (thresholds.json records each model's floors apart)."""
    from stratus_tools.guard.scan import _measure_binary

    load(stem)  # the first call's model load is not a per-input latency
    suffix = f"@1/{every}" if every > 1 else ""  # a sample has its own recorded thresholds
    prefix = f"{stem.name}/" if stem is not None else ""
    return [_measure_binary("indirect", prefix + name + suffix, texts, labels, functools.partial(check, stem=stem))
            for name, (texts, labels) in datasets(every).items()]
