"""Measure the PII rail on a labelled set: precision/recall/F1 per entity type, false-positive rate
on hard negatives, and latency.

Cases are JSON lines `{"id", "text", "entities": [{"type", "value"}], "note"?}`; every occurrence of
a value is a gold span (repeats must be redacted too). Labelling by value, not by offsets, keeps the
set easy to review. A prediction matches a gold span of the same type when they overlap ("Dr. Priya
Raman" vs "Priya Raman" counts: the name is masked either way).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stratus.errors import InvalidInput
from stratus.guard.pii_types import ENTITIES, Finding


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    text: str
    gold: tuple[tuple[str, int, int], ...]  # (type, start, end)


@dataclass(frozen=True, slots=True)
class TypeScore:
    type: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True, slots=True)
class Report:
    per_type: dict[str, TypeScore]
    overall: TypeScore
    negatives: int
    negatives_flagged: list[str]  # ids of hard negatives with any finding
    p50_ms: float
    p95_ms: float

    @property
    def false_positive_rate(self) -> float:
        return len(self.negatives_flagged) / self.negatives if self.negatives else 0.0


def load_cases(path: str | Path) -> list[Case]:
    """Parse the case file; a bad line raises InvalidInput naming the line."""
    cases = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            text = raw["text"]
            gold: list[tuple[str, int, int]] = []
            for entity in raw.get("entities", []):
                kind, value = entity["type"], entity["value"]
                if kind not in ENTITIES:
                    raise ValueError(f"unknown entity type {kind!r}")
                gold.extend(_occurrences(text, kind, value))
            cases.append(Case(str(raw["id"]), text, tuple(sorted(set(gold), key=lambda g: g[1]))))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{path}:{n}: {exc}", field="line") from exc
    return cases


def evaluate(cases: list[Case], spans: Callable[[str], list[Finding]]) -> Report:
    """Score `spans(text)` (what the rail masks, e.g. `redact(text).findings`) against the gold."""
    counts = {t: [0, 0, 0] for t in ENTITIES}  # tp, fp, fn
    flagged, negatives, timings = [], 0, []
    for case in cases:
        start = time.perf_counter()
        predicted = spans(case.text)
        timings.append((time.perf_counter() - start) * 1000)
        if not case.gold:
            negatives += 1
            if predicted:
                flagged.append(case.id)
        for kind, s, e in case.gold:
            hit = any(p.type == kind and p.start < e and s < p.end for p in predicted)
            counts[kind][0 if hit else 2] += 1
        for p in predicted:
            if not any(kind == p.type and p.start < e and s < p.end for kind, s, e in case.gold):
                counts[p.type][1] += 1
    per_type = {t: TypeScore(t, *c) for t, c in counts.items()}
    overall = TypeScore("ALL", *(sum(c[i] for c in counts.values()) for i in range(3)))
    p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) >= 2 else (timings or [0.0])[0]
    return Report(per_type, overall, negatives, flagged, statistics.median(timings or [0.0]), p95)


def format_report(report: Report) -> str:
    lines = [f"{'type':<12} {'prec':>6} {'recall':>6} {'f1':>6} {'tp':>4} {'fp':>4} {'fn':>4}"]
    for s in [*report.per_type.values(), report.overall]:
        lines.append(f"{s.type:<12} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f} {s.tp:4d} {s.fp:4d} {s.fn:4d}")
    lines.append(
        f"hard negatives flagged: {len(report.negatives_flagged)}/{report.negatives} "
        f"(fpr {report.false_positive_rate:.3f}) {report.negatives_flagged}"
    )
    lines.append(f"latency per case: p50 {report.p50_ms:.1f} ms, p95 {report.p95_ms:.1f} ms")
    return "\n".join(lines)


def _occurrences(text: str, kind: str, value: str) -> list[tuple[str, int, int]]:
    found, at = [], text.find(value)
    while at != -1:
        found.append((kind, at, at + len(value)))
        at = text.find(value, at + len(value))
    if not found:
        raise ValueError(f"value {value!r} does not occur in the text")
    return found


if __name__ == "__main__":
    import sys

    from stratus.guard.pii import redact

    path = sys.argv[1] if len(sys.argv) > 1 else "evals/guard/pii_cases.jsonl"
    loaded = load_cases(path)
    redact("warm up the analyzer with Ada Lovelace in London")
    print(format_report(evaluate(loaded, lambda text: redact(text).findings)))
