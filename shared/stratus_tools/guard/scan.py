"""Run guard rails over texts: the registry of rails, the default policy, and JSON-lines scanning.

A rail turns one text into a `RailResult` (verdict + score in 0..1 + details) and knows how to measure
itself on its held-out labelled data (`evaluate`). Adding a rail (groundedness, canary leak, toxicity)
means adding one `Rail` to `RAILS`; the scan command, the eval command and the benchmark pick it up.

This module imports no model: each rail loads its detector on first use, so importing it stays cheap
(the guard function's cold start).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from stratus.errors import InvalidInput, StratusError
from stratus_tools.guard import indirect_eval

VERDICTS = ("pass", "flag", "redact", "block")


@dataclass(frozen=True, slots=True)
class RailResult:
    verdict: str  # one of VERDICTS
    score: float  # 0..1, higher = more likely a hit
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "score": round(self.score, 4), **self.details}


@dataclass(frozen=True, slots=True)
class Measurement:
    """One rail on one labelled dataset: binary detection quality and latency per input."""

    rail: str
    dataset: str
    n: int
    precision: float
    recall: float
    f1: float
    fpr: float
    p50_ms: float
    p95_ms: float

    def metrics(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "fpr": self.fpr,
                "p50_ms": self.p50_ms, "p95_ms": self.p95_ms}


@dataclass(frozen=True, slots=True)
class Rail:
    name: str
    check: Callable[[str], RailResult]
    load: Callable[[], None]  # loads the rail's models (first use); the benchmark times it
    # Its measurements, on the named datasets only when given (None: all of them).
    evaluate: Callable[[frozenset[str] | None], list[Measurement]]
    description: str = ""


def _only(measurements: list[Measurement], datasets: frozenset[str] | None) -> list[Measurement]:
    return [m for m in measurements if datasets is None or m.dataset in datasets]


# --- injection --------------------------------------------------------------------------------------


def _tiered_check(detector: Any, text: str) -> RailResult:
    """One text as the input rail judges it under `block`: blocked from the detector's block tier, flagged
    from its threshold (stratus.guard.detector.tier_action)."""
    from stratus.guard.detector import tier_action

    assessed = detector.assess([text])[0]
    return RailResult(tier_action(assessed.score, detector.threshold, detector.block_threshold), assessed.score,
                      {"view": assessed.view})


def _injection_check(text: str) -> RailResult:
    from stratus.guard.direct import get_direct_detector

    # What a caller sends: the embedding detector (injection-v7), as the input rail runs it under `block`.
    return _tiered_check(get_direct_detector(), text)


def _default_injection_check(text: str) -> RailResult:
    from stratus.guard.injection import get_detector

    # The default input rail: injection-v3 under the default `block`, tiered.
    return _tiered_check(get_detector(), text)


def _default_injection_evaluate(datasets: frozenset[str] | None = None) -> list[Measurement]:
    """What the default input rail *blocks* on every report source (a hit is a block; a flag is not):
    whole sources, n-gram scores in one pass; latency per input timed on the first texts."""
    from stratus.guard.injection import get_detector
    from stratus_tools.guard.injection_sources import by_role

    detector = get_detector()
    block_at = detector.block_threshold
    assert block_at is not None, "injection-v3 has no block tier (models/injection-block.json)"
    out = []
    for src in by_role("report"):
        if datasets is not None and dataset_name(src) not in datasets:
            continue
        texts, labels = src.load()
        blocked = [bool(s >= block_at) for s in detector.score(texts)]
        m = binary_metrics(blocked, [bool(y) for y in labels])
        timed = _measure_binary("injection_block", src.name, texts[:LATENCY_SAMPLE],
                                [bool(y) for y in labels[:LATENCY_SAMPLE]], _default_injection_check)
        out.append(Measurement("injection_block", dataset_name(src), len(texts), m["precision"], m["recall"],
                               m["f1"], m["fpr"], timed.p50_ms, timed.p95_ms))
    return out


def _injection_load() -> None:
    from stratus.embeddings import get_embedder
    from stratus.guard.direct import EMBEDDING_MODEL, get_direct_detector
    from stratus.guard.injection import get_detector

    get_direct_detector().model  # noqa: B018 - reads the artifact
    get_embedder(EMBEDDING_MODEL).embed(["warm up"])  # the embedding session builds on first use
    get_detector().model  # noqa: B018 - the context rail's model


def _default_injection_load() -> None:
    from stratus.guard.injection import get_detector

    get_detector().model  # noqa: B018 - reads the artifact (n-grams: no embedder)


def _injection_context_check(text: str) -> RailResult:
    from stratus.guard.injection import get_detector

    # As the context rail judges a retrieved chunk: against the artifact's context threshold.
    detector = get_detector()
    assessed = detector.assess([text])[0]
    flagged = assessed.score >= detector.context_threshold
    return RailResult("block" if flagged else "pass", assessed.score, {"view": assessed.view})


def _multilingual_check(text: str) -> RailResult:
    from stratus.guard.multilingual import get_multilingual_detector

    # English (and a language the head does not take) as the embedding rail judges it (injection-v7, tiered);
    # any other language by the head, which has no block tier: over its threshold -> flag.
    detector = get_multilingual_detector()
    ((language, head),) = detector.judge([text])  # the gate reads the text once
    if head is None:
        result = _tiered_check(detector.english, text)
    else:
        result = RailResult("flag" if head.flagged else "pass", head.score, {"view": head.view})
    return RailResult(result.verdict, result.score, {**result.details, "language": language})


def _multilingual_load() -> None:
    from stratus.guard.multilingual import get_multilingual_detector

    # The gate, USE and the head for the German text; injection-v7 and MiniLM for the English one.
    get_multilingual_detector().assess(["Guten Morgen, wie geht es dir?", "Good morning, how are you?"])


def _multilingual_evaluate(datasets: frozenset[str] | None = None) -> list[Measurement]:
    """The multilingual rail on its recipe's report sources (stratus_tools.guard.train_multilingual), as the
    recipe scores them (cached vectors; in-the-wild on its seeded sample): the figures the artifact records.
    Latency per input on the path the rail runs, timed one by one on the first texts."""
    from stratus.guard.multilingual import get_multilingual_detector
    from stratus_tools.guard.direct_eval import is_long
    from stratus_tools.guard.train_multilingual import prepare, routed, sources, verdicts

    _multilingual_load()
    detector = get_multilingual_detector()
    out = []
    for src in sources()["report"]:
        if datasets is not None and dataset_name(src) not in datasets:
            continue
        prepared = routed(prepare(src, detector.embed, detector.gate, detector.english.model),
                          detector.model.head_languages)
        hits = verdicts(prepared, detector.model, detector.english.threshold)
        m = binary_metrics([bool(h) for h in hits], [bool(y) for y in prepared.labels])
        texts, labels = prepared.texts, [bool(y) for y in prepared.labels]
        sample = LONG_LATENCY_SAMPLE if is_long(texts) else LATENCY_SAMPLE
        timed = _measure_binary("injection_multilingual", src.name, texts[:sample], labels[:sample],
                                _multilingual_check)
        out.append(Measurement("injection_multilingual", dataset_name(src), len(texts), m["precision"],
                               m["recall"], m["f1"], m["fpr"], timed.p50_ms, timed.p95_ms))
    return out


INDIRECT_TEST = "indirect-test"


def dataset_name(src: Any) -> str:
    """The name a report source is measured (and gated in thresholds.json) under."""
    name: str = src.name
    return {"benign-chat-openers": "benign-chat"}.get(name, name)


def _injection_evaluate(datasets: frozenset[str] | None = None) -> list[Measurement]:
    from stratus.guard.injection import load_indirect
    from stratus_tools.guard.injection_sources import by_role

    _injection_load()  # the first call's model load is not a per-input latency
    # Direct injection on every source held out from training and threshold choice (docs/guard.md):
    # attack-only sources have recall, benign-only ones fpr; the others are 0 by construction. Only the
    # named ones are loaded and scored when `datasets` is given (whole sources embed minutes of text).
    out = [_measure_source(src) for src in by_role("report") if datasets is None or dataset_name(src) in datasets]
    if datasets is None or INDIRECT_TEST in datasets:
        texts, labels = load_indirect("test")  # documentation pieces, clean and with an attack spliced in
        out.append(_measure_binary("injection", INDIRECT_TEST, texts, [bool(x) for x in labels],
                                   _injection_context_check))
    return out


LATENCY_SAMPLE, LONG_LATENCY_SAMPLE = 100, 20  # texts timed one by one; fewer where a text is long


def _measure_source(src: Any, latency_sample: int | None = None) -> Measurement:
    """Quality on the whole source, scored in batches with cached embeddings (the same figures as training
    records); latency per input on the path the rail runs, timed one by one on its first texts (100, or 20
    for a source of long texts: its per-input figure settles on fewer, and each costs seconds)."""
    from stratus.guard.direct import get_direct_detector
    from stratus_tools.guard.direct_eval import is_long, score_texts

    texts, labels = src.load()
    if latency_sample is None:
        latency_sample = LONG_LATENCY_SAMPLE if is_long(texts) else LATENCY_SAMPLE
    hits = score_texts(get_direct_detector().model, texts) >= get_direct_detector().threshold
    m = binary_metrics([bool(h) for h in hits], [bool(y) for y in labels])
    timed = _measure_binary("injection", src.name, texts[:latency_sample], [bool(y) for y in labels[:latency_sample]],
                            _injection_check)
    return Measurement("injection", dataset_name(src), len(texts), m["precision"], m["recall"], m["f1"], m["fpr"],
                       timed.p50_ms, timed.p95_ms)


# --- PII --------------------------------------------------------------------------------------------


def _pii_check(text: str) -> RailResult:
    from stratus.guard.pii import redact

    # redact, not detect: its findings include repeats of a detected value, i.e. what would be masked.
    findings = redact(text).findings
    if not findings:
        return RailResult("pass", 0.0, {"entities": []})
    return RailResult("redact", max(f.score for f in findings), {"entities": sorted({f.type for f in findings})})


def _pii_load() -> None:
    from stratus.guard.pii import redact

    redact("Ada Lovelace lives in London.")  # Presidio and spaCy build on the first call


def _pii_evaluate() -> list[Measurement]:
    from stratus.guard.injection import HARD_SET
    from stratus.guard.pii import redact
    from stratus_tools.guard import pii_eval

    cases = pii_eval.load_cases(HARD_SET.with_name("pii_cases.jsonl"))
    _pii_load()  # the first call's model load is not a per-input latency
    report = pii_eval.evaluate(cases, lambda text: redact(text).findings)
    o = report.overall
    # Entity-level precision/recall (a span must be found with its type); fpr = hard negatives with any finding.
    return [Measurement("pii", "pii-cases", len(cases), o.precision, o.recall, o.f1, report.false_positive_rate,
                        report.p50_ms, report.p95_ms)]


# --- toxicity ---------------------------------------------------------------------------------------


def _toxicity_check(text: str) -> RailResult:
    from stratus.guard.toxicity import get_classifier

    assessed = get_classifier().assess_one(text)
    return RailResult("block" if assessed.flagged else "pass", assessed.score,
                      {"sentence": assessed.sentence} if assessed.sentence else {})


def _toxicity_load() -> None:
    from stratus.guard.toxicity import get_classifier

    get_classifier().model  # noqa: B018 - reads the artifact


def _toxicity_evaluate() -> list[Measurement]:
    from stratus.guard.injection import BENIGN_CHAT, load_hard_set
    from stratus.guard.toxicity import CASES
    from stratus_tools.guard.training import load_labelled_jsonl

    _toxicity_load()  # the first call's model load is not a per-input latency
    # No registry package ships English labelled toxicity data: our own held-out set is the test set.
    texts, labels = load_labelled_jsonl(CASES, "toxic")
    out = [_measure_binary("toxicity", "toxicity-cases", texts, [bool(x) for x in labels], _toxicity_check)]
    texts, labels = load_hard_set(BENIGN_CHAT)  # all benign: only fpr is meaningful
    out.append(_measure_binary("toxicity", "benign-chat", texts, [bool(x) for x in labels], _toxicity_check))
    return out


RAILS: dict[str, Rail] = {
    "injection": Rail("injection", _injection_check, _injection_load, _injection_evaluate,
                      "prompt injection / jailbreak, the embedding detector (a tenant's opt-in); "
                      "over its block tier -> block, over its threshold -> flag (measured: flagged)"),
    "injection_block": Rail("injection_block", _default_injection_check, _default_injection_load,
                            _default_injection_evaluate,
                            "the default input rail (n-gram detector); over its block tier -> block, over its "
                            "threshold -> flag (measured: blocked)"),
    "pii": Rail("pii", _pii_check, _pii_load, lambda datasets: _only(_pii_evaluate(), datasets),
                "Presidio PII detection; any finding -> redact (score = highest finding)"),
    "toxicity": Rail("toxicity", _toxicity_check, _toxicity_load,
                     lambda datasets: _only(_toxicity_evaluate(), datasets),
                     "toxicity classifier on answers (whole text and each sentence); over threshold -> block"),
    "indirect": Rail("indirect", indirect_eval.check, indirect_eval.load,
                     lambda datasets: _only(indirect_eval.evaluate(), datasets),
                     "instructions to the model inside documents / tool results (highest window); over -> flag"),
    "injection_multilingual": Rail("injection_multilingual", _multilingual_check, _multilingual_load,
                                   _multilingual_evaluate,
                                   "opt-in, run only when named: prompt injection in any language, English by the "
                                   "embedding detector, other languages by a head on multilingual vectors (USE); "
                                   "over its threshold -> flag"),
}
# Run only when named: it loads a second embedder (USE), and a tenant runs it only by opting in
# (`"detector": "multilingual"`, GuardMultilingualFunction).
OPT_IN_RAILS = frozenset({"injection_multilingual"})


def select_rails(names: str | Sequence[str] | None) -> list[Rail]:
    """Rails by name (comma-separated string or list), in the given order; None or "" means all but the
    opt-in ones (OPT_IN_RAILS)."""
    if names is None or names == "":
        return [r for name, r in RAILS.items() if name not in OPT_IN_RAILS]
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    unknown = [n for n in wanted if n not in RAILS]
    if unknown or not all(wanted):
        raise InvalidInput(f"unknown rail(s) {unknown or ['']}; known: {sorted(RAILS)}", field="rails")
    return [RAILS[n] for n in dict.fromkeys(wanted)]


# --- scanning JSON lines ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    id: Any  # the line's id when it could be read, else None
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "line": self.line, "error": self.error}


@dataclass(frozen=True, slots=True)
class Scanned:
    id: str | int
    rails: dict[str, RailResult]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "rails": {name: r.to_json() for name, r in self.rails.items()}}


def parse_line(number: int, raw: str) -> tuple[str | int, str] | LineError:
    """(id, text) from one input line, or an error naming the line and the field."""
    try:
        row = json.loads(raw)
    except ValueError as exc:  # a JSONDecodeError, or an integer past Python's digit limit
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return LineError(number, None, f"line {number}: not JSON ({reason})")
    if not isinstance(row, dict):
        return LineError(number, None, f"line {number}: expected a JSON object, got {type(row).__name__}")
    ident = row.get("id")
    # bool is an int subclass; an id of true is almost certainly a mistake.
    if "id" not in row or not isinstance(ident, str | int) or isinstance(ident, bool):
        got = "missing" if "id" not in row else type(ident).__name__
        return LineError(number, None, f"line {number}: 'id' must be a string or an integer ({got})")
    if "text" not in row:
        return LineError(number, ident, f"line {number}: 'text' is missing")
    if not isinstance(row["text"], str):
        return LineError(number, ident, f"line {number}: 'text' must be a string, got {type(row['text']).__name__}")
    return ident, row["text"]


def scan_text(text: str, rails: Sequence[Rail]) -> dict[str, RailResult]:
    return {rail.name: rail.check(text) for rail in rails}


def scan_lines(lines: Iterable[str], rails: Sequence[Rail]) -> Iterator[Scanned | LineError]:
    """One result per non-blank line, in order. A line a rail refuses (e.g. text too large) becomes a
    LineError too; the other lines still run."""
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        parsed = parse_line(number, raw)
        if isinstance(parsed, LineError):
            yield parsed
            continue
        ident, text = parsed
        try:
            yield Scanned(ident, scan_text(text, rails))
        except StratusError as exc:
            yield LineError(number, ident, f"line {number}: {exc.message}")


# --- measuring ----------------------------------------------------------------------------------------


def _measure_binary(rail: str, dataset: str, texts: Sequence[str], labels: Sequence[bool],
                    check: Callable[[str], RailResult]) -> Measurement:
    """Run `check` on each text (timed one by one: latency per input); a hit is any verdict but pass."""
    from stratus_tools.evals.retrieval import percentile

    hits, timings = [], []
    for text in texts:
        start = time.perf_counter()
        result = check(text)
        timings.append((time.perf_counter() - start) * 1000)
        hits.append(result.verdict != "pass")
    m = binary_metrics(hits, labels)
    return Measurement(rail, dataset, len(texts), m["precision"], m["recall"], m["f1"], m["fpr"],
                       percentile(timings, 50), percentile(timings, 95))


def binary_metrics(predicted: Sequence[bool], labels: Sequence[bool]) -> dict[str, float]:
    if len(predicted) != len(labels):
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labels")
    tp = sum(p and y for p, y in zip(predicted, labels, strict=True))
    fp = sum(p and not y for p, y in zip(predicted, labels, strict=True))
    fn = sum(y and not p for p, y in zip(predicted, labels, strict=True))
    tn = len(labels) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "fpr": fp / (fp + tn) if fp + tn else 0.0}


def check_thresholds(measurements: Iterable[Measurement], thresholds: dict[str, Any]) -> list[str]:
    """Regressions, one message per metric past its recorded floor ("min") or ceiling ("max").

    thresholds: {rail: {dataset: {metric: {"min": x} | {"max": x}}}}; keys starting with "_" are notes.
    A measured dataset with no recorded thresholds is reported too: an unguarded rail is a gap."""
    problems = []
    for m in measurements:
        limits = thresholds.get(m.rail, {}).get(m.dataset)
        if not limits:
            problems.append(f"{m.rail}/{m.dataset}: no thresholds recorded")
            continue
        values = m.metrics()
        for metric, bound in limits.items():
            if metric.startswith("_"):
                continue
            if metric not in values:
                problems.append(f"{m.rail}/{m.dataset}: unknown metric {metric!r} in thresholds")
                continue
            value = values[metric]
            if "min" in bound and value < bound["min"]:
                problems.append(f"{m.rail}/{m.dataset} {metric} {value:.3f} < floor {bound['min']}")
            if "max" in bound and value > bound["max"]:
                problems.append(f"{m.rail}/{m.dataset} {metric} {value:.3f} > ceiling {bound['max']}")
    return problems
