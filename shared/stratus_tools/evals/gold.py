"""Offline evaluation: gold question sets per prompt, run through the real query workflow and scored.

    evals/gold/<prompt>.jsonl     one case a line: {"id", "question", "kind", "expect", "must_include"?}
    evals/gold/corpus/            documents added to examples/corpus for the suites (contradicting policies)
    evals/gold/thresholds.json    floors per suite, group ("all" or a kind) and metric

A run ingests the corpus into a fresh tenant of the local stack, asks every question through the query
workflow (input rails, Retrieve, Generate, output rails; the offline provider unless a hosted model is
configured), scores each answer, and drops the tenant. The response cache is bypassed: a cached answer
would score an earlier run's prompt, not this one.

Scores per case (None where a metric does not apply):
- citations: every expected source is cited, and no cited passage lies outside the retrieved ones;
- refusal: a case expecting a refusal was refused (the guard blocked it, or the answer declines and cites
  nothing); any other case was not;
- must_include: every listed phrase is in the answer (case-insensitive).
A case passes when every metric that applies passes; a workflow failure fails the case and is reported.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stratus.errors import InvalidInput
from stratus_tools.evals.jsonl import jsonl_objects

ROOT = Path(__file__).resolve().parents[3]
GOLD_DIR = ROOT / "evals" / "gold"
CORPORA = (ROOT / "examples" / "corpus", GOLD_DIR / "corpus")
THRESHOLDS = GOLD_DIR / "thresholds.json"
KINDS = ("answerable", "out_of_scope", "injection", "absent", "contradiction")
METRICS = ("pass_rate", "citations", "refusal", "must_include")

# How answers decline. The offline provider says NO_ANSWER; the rag-answer prompt tells hosted models to
# "say that you cannot answer from the provided documents"; these cover the usual phrasings of both.
_DECLINES = re.compile(
    r"\b(?:do(?:es)? not|don't|doesn't|cannot|can't|unable to|not able to)\s+"
    r"(?:\w+\s+){0,3}?(?:answer|contain|mention|say|cover|know|find|provide|help)"
    r"|\bno (?:information|mention|answer)\b",
    re.IGNORECASE,
)


class GoldSetError(InvalidInput):
    """A bad suite, case or thresholds file; the message names the file, line and field."""


@dataclass(frozen=True)
class GoldCase:
    id: str
    question: str
    kind: str
    citations: tuple[str, ...] = ()  # expected sources (relative corpus paths)
    refusal: bool = False
    must_include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What the workflow did with one question."""

    text: str = ""
    cited: tuple[tuple[int, str], ...] = ()  # (chunk id, source key) per citation
    retrieved: tuple[int, ...] = ()  # chunk ids the prompt was built from
    blocked: str | None = None  # the rail that blocked the request
    error: str | None = None  # the workflow failed
    ms: float = 0.0


@dataclass
class CaseResult:
    id: str
    kind: str
    passed: bool
    scores: dict[str, bool | None]
    cited: list[str]
    refused: bool
    blocked: str | None
    answer: str
    ms: float
    problems: list[str] = field(default_factory=list)


# ---- loading ------------------------------------------------------------------------------------------


def available_suites(gold_dir: Path = GOLD_DIR) -> list[str]:
    return sorted(p.stem for p in gold_dir.glob("*.jsonl"))


def suite_path(suite: str, gold_dir: Path = GOLD_DIR) -> Path:
    return gold_dir / f"{suite}.jsonl"


def load_suite(path: Path, sources: Iterable[str] | None = None) -> list[GoldCase]:
    """Validated cases; `sources` (the corpus keys), when given, must hold every expected citation."""
    known = set(sources) if sources is not None else None
    cases, seen = [], set()
    for where, obj in jsonl_objects(path, error=GoldSetError, field="suite", what="the suite"):
        case = _parse_case(obj, where, known)
        if case.id in seen:
            raise GoldSetError(f"{where}: duplicate case id {case.id!r}", field="id")
        seen.add(case.id)
        cases.append(case)
    if not cases:
        raise GoldSetError(f"{path}: no cases", field="suite")
    return cases


def _parse_case(obj: dict[str, Any], where: str, known: set[str] | None) -> GoldCase:
    unknown = set(obj) - {"id", "question", "kind", "expect", "must_include"}
    if unknown:
        raise GoldSetError(f"{where}: unknown field(s) {sorted(unknown)}", field=sorted(unknown)[0])
    for name in ("id", "question"):
        if not isinstance(obj.get(name), str) or not obj[name].strip():
            raise GoldSetError(f"{where}: field {name!r} must be a non-empty string", field=name)
    if obj.get("kind") not in KINDS:
        raise GoldSetError(f"{where}: field 'kind' must be one of {', '.join(KINDS)}", field="kind")
    expect = obj.get("expect")
    if expect == {"refusal": True}:
        citations: list[str] = []
    elif isinstance(expect, dict) and set(expect) == {"citations"} and _strings(expect["citations"]):
        citations = expect["citations"]
    else:
        raise GoldSetError(f"{where}: field 'expect' must be {{\"citations\": [source, ...]}} or "
                           f"{{\"refusal\": true}}", field="expect")
    must = obj.get("must_include", [])
    if not isinstance(must, list) or (must and not _strings(must)):
        raise GoldSetError(f"{where}: field 'must_include' must be a list of non-empty strings",
                           field="must_include")
    if known is not None and set(citations) - known:
        raise GoldSetError(f"{where}: expected citation(s) not in the corpus: {sorted(set(citations) - known)}",
                           field="expect")
    return GoldCase(obj["id"], obj["question"], obj["kind"], tuple(citations), not citations, tuple(must))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)


# ---- scoring ------------------------------------------------------------------------------------------


def declines(text: str) -> bool:
    return bool(_DECLINES.search(text))


def is_refusal(outcome: Outcome) -> bool:
    """Blocked by a rail, or an answer that declines and cites nothing. An uncited answer that does not
    decline is not a refusal: a model answering an off-topic question from its own knowledge did answer."""
    return outcome.blocked is not None or (not outcome.cited and declines(outcome.text))


def score_case(case: GoldCase, outcome: Outcome) -> CaseResult:
    sources = sorted({source for _, source in outcome.cited})
    refused = outcome.error is None and is_refusal(outcome)
    scores: dict[str, bool | None] = {"citations": None, "refusal": None, "must_include": None}
    problems: list[str] = []
    if outcome.error is not None:
        problems.append(f"workflow failed: {outcome.error}")
        scores = dict.fromkeys(scores, False)
        return CaseResult(case.id, case.kind, False, scores, sources, False, None, "", outcome.ms, problems)
    scores["refusal"] = refused == case.refusal
    if not scores["refusal"]:
        problems.append("refused an answerable question" if refused else "answered instead of refusing")
    if case.citations:
        missing = sorted(set(case.citations) - set(sources))
        outside = sorted({src for chunk, src in outcome.cited if chunk not in set(outcome.retrieved)})
        scores["citations"] = not missing and not outside
        if missing:
            problems.append(f"not cited: {', '.join(missing)}")
        if outside:
            problems.append(f"cited passages that were not retrieved: {', '.join(outside)}")
    if case.must_include:
        absent = [p for p in case.must_include if p.lower() not in outcome.text.lower()]
        scores["must_include"] = not absent
        if absent:
            problems.append(f"answer lacks: {', '.join(repr(p) for p in absent)}")
    passed = all(v is not False for v in scores.values())
    return CaseResult(case.id, case.kind, passed, scores, sources, refused, outcome.blocked, outcome.text,
                      round(outcome.ms, 1), problems)


def aggregate(results: Sequence[CaseResult]) -> dict[str, dict[str, Any]]:
    """Per group ("all", then each kind present): n, passed, and each metric's mean over the cases it
    applies to (None when it applies to none)."""
    groups: dict[str, list[CaseResult]] = {"all": list(results)}
    for r in results:
        groups.setdefault(r.kind, []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for name, rows in groups.items():
        row: dict[str, Any] = {"n": len(rows), "passed": sum(r.passed for r in rows),
                               "pass_rate": round(sum(r.passed for r in rows) / len(rows), 4) if rows else None}
        for metric in METRICS[1:]:
            applied = [r.scores[metric] for r in rows if r.scores[metric] is not None]
            row[metric] = round(sum(bool(v) for v in applied) / len(applied), 4) if applied else None
        out[name] = row
    return out


def load_thresholds(path: Path, suite: str) -> dict[str, dict[str, dict[str, float]]]:
    """The suite's floors: {group: {metric: {"min": x}}}; keys starting with "_" are notes."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GoldSetError(f"{path}: cannot read thresholds: {err}", field="thresholds") from None
    floors = data.get(suite) if isinstance(data, dict) else None
    if not isinstance(floors, dict):
        raise GoldSetError(f"{path}: no thresholds for suite {suite!r}", field="thresholds")
    for group, metrics in floors.items():
        if group.startswith("_"):
            continue
        if group not in ("all", *KINDS) or not isinstance(metrics, dict):
            raise GoldSetError(f"{path}: {suite}.{group}: not 'all' or a kind with metrics", field="thresholds")
        for metric, bound in metrics.items():
            if metric.startswith("_"):
                continue
            if metric not in METRICS or not isinstance(bound, dict) or set(bound) != {"min"} \
                    or not isinstance(bound["min"], int | float):
                raise GoldSetError(f"{path}: {suite}.{group}.{metric}: expected a metric of {', '.join(METRICS)}"
                                   f" with {{\"min\": number}}", field="thresholds")
    return floors


def check_thresholds(suite: str, aggregates: dict[str, dict[str, Any]],
                     floors: dict[str, dict[str, Any]]) -> list[str]:
    """One line per missed floor, naming suite, group and metric; a floored group with no cases is missed."""
    problems = []
    for group, metrics in floors.items():
        if group.startswith("_"):
            continue
        for metric, bound in metrics.items():
            if metric.startswith("_"):
                continue
            value = aggregates.get(group, {}).get(metric)
            if value is None:
                problems.append(f"regression: {suite}/{group} {metric} not measured (no case applies)")
            elif value < bound["min"]:
                problems.append(f"regression: {suite}/{group} {metric} {value:.3f} < floor {bound['min']}")
    return problems


def compare_versions(suite: str, current: SuiteResult, candidate: SuiteResult) -> list[str]:
    """A promotion's second gate: one line per group and metric where the candidate passes fewer cases than
    the version the label serves now (any case: both ran on the same machine and corpus, so a lost case is
    the prompt's doing or a model's noise, and --force is there for the latter), then the cases that passed
    on the current version and fail on the candidate. Empty: no regression."""
    problems = []
    for group, row in candidate.aggregates.items():
        before = current.aggregates.get(group)
        if before is None:
            continue
        for metric in METRICS:
            passed_now, passed_before = _passed(candidate.cases, group, metric), _passed(current.cases, group, metric)
            if passed_now < passed_before:
                problems.append(f"regression: {suite}/{group} {metric} {row[metric]:.3f} < {before[metric]:.3f} "
                                f"(v{current.prompt_version}, {passed_before - passed_now} case(s) fewer)")
    was = {c.id for c in current.cases if c.passed}
    lost = [c.id for c in candidate.cases if c.id in was and not c.passed]
    if problems and lost:  # what to look at; a case lost and another gained is not a regression
        problems.append(f"passed on v{current.prompt_version}, fail on v{candidate.prompt_version}: {', '.join(lost)}")
    return problems


def _passed(cases: Sequence[CaseResult], group: str, metric: str) -> int:
    rows = [c for c in cases if group in ("all", c.kind)]
    if metric == "pass_rate":
        return sum(c.passed for c in rows)
    return sum(bool(c.scores.get(metric)) for c in rows)


# ---- running ------------------------------------------------------------------------------------------


@dataclass
class SuiteResult:
    suite: str
    prompt_version: int | None
    cases: list[CaseResult]
    aggregates: dict[str, dict[str, Any]]
    seconds: float
    problems: list[str] = field(default_factory=list)  # missed thresholds

    def to_json(self) -> dict[str, Any]:
        return {"suite": self.suite, "prompt_version": self.prompt_version, "seconds": round(self.seconds, 2),
                "passed": not self.problems, "regressions": self.problems, "aggregates": self.aggregates,
                "cases": [asdict(c) for c in self.cases]}

    def summary_lines(self) -> list[str]:
        out = [f"{'GROUP':<14} {'N':>3} {'PASSED':>6}  " + "  ".join(f"{m:>12}" for m in METRICS)]
        for group, row in self.aggregates.items():
            cells = "  ".join(f"{'-' if row[m] is None else format(row[m], '.3f'):>12}" for m in METRICS)
            out.append(f"{group:<14} {row['n']:>3} {row['passed']:>6}  {cells}")
        version = f" (v{self.prompt_version})" if self.prompt_version else ""
        out.append(f"{self.suite}{version}: {self.aggregates['all']['passed']}/{len(self.cases)} cases passed"
                   f" in {self.seconds:.1f} s")
        return out


def case_line(c: CaseResult) -> str:
    what = f"blocked by {c.blocked}" if c.blocked else "refused" if c.refused else f"cited {','.join(c.cited) or '-'}"
    problems = f"  ({'; '.join(c.problems)})" if c.problems else ""
    return f"{'PASS' if c.passed else 'FAIL'}  {c.id:<18} {c.kind:<13} {what}{problems}"


def corpus_sources(corpora: Sequence[Path] = CORPORA) -> dict[str, Path]:
    """Corpus files keyed by their path relative to their folder; a key in two folders is an error."""
    from stratus_tools.evals.retrieval import corpus_files

    files: dict[str, Path] = {}
    for folder in corpora:
        for key, path in corpus_files(folder).items():
            if key in files:
                raise GoldSetError(f"{path}: {key} is also in {files[key].parent}", field="corpus")
            files[key] = path
    return files


def run_suite(suite: str, *, corpora: Sequence[Path] = CORPORA, gold_dir: Path = GOLD_DIR,
              thresholds: Path | None = THRESHOLDS, prompt_version: int | None = None,
              progress: Callable[[CaseResult], None] | None = None) -> SuiteResult:
    """Run suite `suite` (prompt of the same name) in a fresh tenant; the caller provides the stack."""
    files = corpus_sources(corpora)
    cases = load_suite(suite_path(suite, gold_dir), files)
    floors = load_thresholds(thresholds, suite) if thresholds is not None else {}
    tenant_id = f"eval-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    from stratus_tools.evals.retrieval import ingest_corpus

    try:
        ingest_corpus(tenant_id, files)
        results = []
        for case in cases:
            results.append(score_case(case, ask_workflow(case, tenant_id, suite, prompt_version)))
            if progress is not None:
                progress(results[-1])
    finally:
        _drop_tenant(tenant_id)
    aggregates = aggregate(results)
    return SuiteResult(suite, prompt_version, results, aggregates, time.perf_counter() - started,
                       check_thresholds(suite, aggregates, floors))


def ask_workflow(case: GoldCase, tenant_id: str, prompt: str, prompt_version: int | None) -> Outcome:
    """One question through the query workflow, as the gateway asks it (RAG mode), cache bypassed."""
    from stratus.aws.workflows import WorkflowFailed, run_workflow
    from stratus.workflow_state import new_query

    query = new_query(case.question, tenant_id, prompt=prompt)
    query = query.model_copy(update={"prompt_version": prompt_version, "cache": False})
    started = time.perf_counter()
    try:
        out = run_workflow(query.model_dump(mode="json")).output
    except WorkflowFailed as err:
        if err.error in ("InvalidInput", "NotFound"):  # a setup problem (e.g. no such prompt version), not quality
            raise GoldSetError(f"case {case.id}: {err}", field="suite") from None
        return Outcome(error=str(err), ms=(time.perf_counter() - started) * 1000)
    ms = (time.perf_counter() - started) * 1000
    blocked = ((out.get("guard") or {}).get("blocked") or {}).get("rail")
    cited = tuple((c["chunk_id"], c["source_key"]) for c in out.get("citations", []))
    return Outcome(out.get("text", ""), cited, tuple(out.get("chunk_ids", [])), blocked, ms=ms)


def _drop_tenant(tenant_id: str) -> None:
    from stratus.db.connection import tenant_transaction
    from stratus.db.documents import delete_tenant

    with tenant_transaction(tenant_id) as conn:
        delete_tenant(conn, tenant_id)
