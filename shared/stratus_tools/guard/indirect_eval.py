"""`stratus eval guard --rail indirect`: the indirect-injection detector on held-out spliced sets.

Datasets (all scored at the artifact's threshold, as the context and tool rails use it):
- spliced-documents / spliced-tool-results: test-split documents, clean and with an agentdojo payload
  spliced in, as plain chunks or as JSON tool results (evals/guard/indirect_spliced.jsonl);
- ipi-coding-agent: inspect-evals' coding-agent issue texts and files, benign and attacked, as written.
None of these sources was used for training or for the threshold. Kept apart from stratus_tools.guard.scan's
direct-injection section (scan only registers the rail), so the two can change independently.
"""

from __future__ import annotations

from typing import Any


def check(text: str) -> Any:
    from stratus.guard.indirect import get_detector
    from stratus_tools.guard.scan import RailResult

    assessed = get_detector().assess([text])[0]
    return RailResult("flag" if assessed.flagged else "pass", assessed.score, {"window": assessed.window})


def load() -> None:
    from stratus.embeddings import get_embedder
    from stratus.guard.indirect import EMBEDDER, get_detector

    get_detector().model  # noqa: B018 - reads the artifact
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


def evaluate(every: int = 1) -> list[Any]:
    from stratus_tools.guard.scan import _measure_binary

    load()  # the first call's model load is not a per-input latency
    suffix = f"@1/{every}" if every > 1 else ""  # a sample has its own recorded thresholds
    return [_measure_binary("indirect", name + suffix, texts, labels, check)
            for name, (texts, labels) in datasets(every).items()]
