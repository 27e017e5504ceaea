"""One run of online evaluation: score the requests sampled since the last finished run.

1. The window is (end of the last finished run, now]. A run that crashed left no finished row, so the
   next run takes the same window again; scores are keyed by (tenant, request, metric), so the repeat
   rewrites them and nothing is counted twice. A run that nears the function's deadline stops between
   samples and finishes as "partial" with the tenants it completed; the next run resumes that window for
   the others before it moves on.
2. For each tenant, each sample in the window gets the deterministic checks (stratus.evals.checks) and the
   judge (stratus.evals.judge; a hosted judge's calls run `eval_judge_concurrency` at a time); each
   sample's scores are stored as soon as they are known.
3. Per tenant, prompt version and metric: the window's mean (aggregates), compared with the trailing
   baseline (the previous runs' means for that prompt); a drop past `eval_regression_drop` with enough
   samples is a regression.
4. Input drift: the questions of the last day (at least the window) against those of the week before.
5. Prompt rollouts: each active one's candidate against the label's version on the samples it split;
   a regression past its margin rolls it back (stratus.prompt_rollouts.check_all, audited).
6. The run is marked done with its summary; the caller emits its metrics (EMF on Lambda).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stratus.evals.checks import Score, run_checks
from stratus.evals.metrics import Metric

log = logging.getLogger(__name__)

FIRST_WINDOW = timedelta(days=1)  # the first run ever looks back this far
# A sample's created_at is its insert transaction's start; the window ends this long before now so that a
# sample still committing when a run reads is in the next run's window, not lost between two.
SETTLE = timedelta(seconds=10)
# Drift compares the last day of questions (a 15-minute window at a 2% sample holds too few) with the
# week before it; consecutive runs see overlapping days, which is what a trend line of drift wants.
DRIFT_RECENT = timedelta(days=1)
DRIFT_BASELINE = timedelta(days=7)
DRIFT_MAX_QUESTIONS = 2000
# A run stops this long before its deadline: room for the finishing writes (a tenant cut short is not
# aggregated; its window is resumed by the next run).
STOP_MARGIN_S = 30.0


@dataclass
class RunResult:
    run_id: int
    window_from: datetime
    window_to: datetime
    samples: int = 0
    scores: int = 0
    judge_failures: int = 0
    score_errors: int = 0
    unscored: int = 0  # samples over eval_max_samples_per_run in a tenant's window: left out of this run
    judge_cost_usd: float = 0.0  # what the hosted judge's calls cost (the price table's figure)
    resumed: bool = False  # this run continues a partial run's window
    tenants_done: list[str] = field(default_factory=list)  # scored and aggregated (this run or the one resumed)
    tenants_left: int = 0  # not reached before the deadline: the next run resumes them
    regressions: list[dict[str, Any]] = field(default_factory=list)
    rollouts: list[dict[str, Any]] = field(default_factory=list)  # each active rollout's check and action
    drift: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"samples": self.samples, "scores": self.scores, "judge_failures": self.judge_failures,
                "score_errors": self.score_errors, "unscored": self.unscored,
                "judge_cost_usd": round(self.judge_cost_usd, 6), "resumed": self.resumed,
                "tenants_done": len(self.tenants_done), "tenants_left": self.tenants_left,
                "regressions": self.regressions, "rollouts": self.rollouts,
                "drift": self.drift, "seconds": round(self.seconds, 3)}


def run_sampler(*, settings: Any = None, conn: Any = None, now: datetime | None = None, router: Any = None,
                tenants: list[str] | None = None, since: datetime | None = None,
                time_left: Callable[[], float] | None = None) -> RunResult:
    """One run over (since or the end of the last finished run, now - SETTLE], or the rest of a partial
    run's window; `tenants` limits it (default: all); `now` sets the window's end; `time_left` (seconds
    until the function's deadline) lets it stop in time."""
    from stratus.config import get_settings
    from stratus.db import evals as store
    from stratus.db.connection import ensure_idle, get_connection
    from stratus.generation.service import get_router

    s = settings or get_settings()
    conn = conn or get_connection()
    router = router or get_router(s)
    started = time.perf_counter()
    with conn.transaction():
        window_from, window_to, carried = _window(store.last_finished_run(conn), since, now)
        run_id = store.start_run(conn, window_from, window_to)
    result = RunResult(run_id, window_from, window_to, resumed=carried is not None,
                       tenants_done=sorted(carried or []))

    def out_of_time() -> bool:
        return time_left is not None and time_left() < STOP_MARGIN_S

    try:
        todo = [t for t in (tenants if tenants is not None else _tenants(conn)) if t not in result.tenants_done]
        for i, tenant_id in enumerate(todo):
            if out_of_time() or not _score_tenant(conn, tenant_id, result, s, router, out_of_time):
                result.tenants_left = len(todo) - i
                break
            result.tenants_done.append(tenant_id)
        result.seconds = time.perf_counter() - started
        result.metrics.extend(_run_metrics(result))
        with conn.transaction():
            store.finish_run(conn, run_id, "partial" if result.tenants_left else "done", result.summary(),
                             result.tenants_done)
    except Exception:
        ensure_idle(conn)
        with conn.transaction():
            store.finish_run(conn, run_id, "failed", result.summary())
        raise
    return result


def _window(last: dict[str, Any] | None, since: datetime | None,
            now: datetime | None) -> tuple[datetime, datetime, list[str] | None]:
    """(from, to, tenants already done): a partial run's window is resumed, unless `since` names one."""
    if since is None and last is not None and last["status"] == "partial":
        return last["window_from"], last["window_to"], list(last["tenants_done"])
    window_to = now or datetime.now(UTC) - SETTLE
    if since is not None:
        return since, window_to, None
    return (last["window_to"] if last else window_to - FIRST_WINDOW), window_to, None


def _tenants(conn: Any) -> list[str]:
    from stratus.db.tenants import list_tenants

    with conn.transaction():
        return [t["id"] for t in list_tenants(conn)]


def _score_tenant(conn: Any, tenant_id: str, result: RunResult, s: Any, router: Any,
                  out_of_time: Callable[[], bool]) -> bool:
    """Score, aggregate and measure drift for one tenant; False when the deadline came first (its scores so
    far are kept, it is not aggregated, and the next run resumes it)."""
    from stratus.db import evals as store
    from stratus.db.connection import tenant_transaction
    from stratus.evals.judge import load_judge

    with tenant_transaction(tenant_id, conn):
        samples, in_window = store.samples_between(conn, tenant_id, result.window_from, result.window_to,
                                                   s.eval_max_samples_per_run)
        judge = load_judge(conn, tenant_id, settings=s, router=router)
        passages = [_passages(conn, tenant_id, sample) for sample in samples]
    result.unscored += in_window - len(samples)
    work = list(zip(samples, passages, strict=True))

    def score(item: tuple[dict[str, Any], list[Any]]) -> tuple[list[Score], float]:
        return _score_sample(item[0], item[1], s, judge)

    # A hosted judge waits on the provider: its calls run side by side. The offline judge is CPU work.
    workers = min(s.eval_judge_concurrency, len(work)) if judge.hosted else 1
    pool = ThreadPoolExecutor(workers, thread_name_prefix="judge") if workers > 1 else None
    finished = False
    try:
        scored = pool.map(score, work) if pool else map(score, work)
        for i, sample in enumerate(samples):  # stored in order as they finish
            if i and out_of_time():  # (the caller checked before the first)
                return False
            scores, judge_cost = next(scored)
            _store_scores(conn, tenant_id, sample, scores, result)
            result.judge_cost_usd += judge_cost
        finished = True
    finally:
        if pool:  # on a stop, calls not yet started are cancelled and those in flight are not waited for
            pool.shutdown(wait=finished, cancel_futures=True)
    _aggregate(conn, tenant_id, result, s)
    from stratus.prompt_rollouts import check_all

    result.rollouts.extend(check_all(conn, tenant_id))
    if samples:
        result.drift[tenant_id] = _drift(conn, tenant_id, result)
    return True


def _passages(conn: Any, tenant_id: str, sample: dict[str, Any]) -> list[Any]:
    """The chunks the answer was generated from, numbered as the prompt numbered them (the order they were
    given to the model); chunks of a document replaced since are gone."""
    from stratus.db import evals as store
    from stratus.llm.types import ContextPassage

    texts = store.chunk_texts(conn, tenant_id, list(sample["chunk_ids"] or []))
    return [ContextPassage(number=i, chunk_id=cid, document_id="", document_version=0, source_key="",
                           text=texts[cid]) for i, cid in enumerate(sample["chunk_ids"] or [], start=1)
            if cid in texts]


def _store_scores(conn: Any, tenant_id: str, sample: dict[str, Any], scores: list[Score], result: RunResult) -> None:
    from stratus.db import evals as store
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(tenant_id, conn):
        for sc in scores:
            store.upsert_score(conn, {"tenant_id": tenant_id, "request_id": sample["request_id"],
                                      "metric": sc.metric, "score": sc.score, "passed": sc.passed,
                                      "scorer": sc.scorer, "error": sc.error, "details": sc.details,
                                      "run_id": result.run_id, "prompt_name": sample["prompt_name"],
                                      "prompt_version": sample["prompt_version"]})
    result.samples += 1
    result.scores += sum(sc.error is None for sc in scores)
    result.score_errors += sum(sc.error is not None for sc in scores)
    result.judge_failures += sum(sc.error is not None and sc.scorer.startswith("judge") for sc in scores)


def _score_sample(sample: dict[str, Any], passages: list[Any], s: Any, judge: Any) -> tuple[list[Score], float]:
    """The checks and the judge's verdict for one sample, and what the judge's call cost. No database."""
    from stratus.evals.judge import CRITERIA

    scores = run_checks(sample, passages, s)
    verdict = judge.grade(sample["question"], sample["answer"], passages)
    for criterion in CRITERIA:
        if verdict.error is not None:
            scores.append(Score(f"judge_{criterion}", None, None, scorer=verdict.scorer, error=verdict.error))
        else:
            value = verdict.scores[criterion]
            scores.append(Score(f"judge_{criterion}", value, value >= 0.5, scorer=verdict.scorer,
                                details={"reason": verdict.reason[:300]}))
    return scores, verdict.cost_usd


def _aggregate(conn: Any, tenant_id: str, result: RunResult, s: Any) -> None:
    from stratus.db import evals as store
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(tenant_id, conn):
        for row in store.window_means(conn, tenant_id, result.window_from, result.window_to):
            mean = float(row["mean"]) if row["mean"] is not None else None
            baseline, runs = store.baseline_mean(conn, tenant_id, row["prompt_name"], row["metric"],
                                                 result.window_to, s.eval_baseline_runs)
            store.upsert_aggregate(conn, {"run_id": result.run_id, "tenant_id": tenant_id,
                                          "prompt_name": row["prompt_name"], "prompt_version": row["prompt_version"],
                                          "metric": row["metric"], "n": int(row["n"]), "mean": mean,
                                          "failures": int(row["failures"]), "window_to": result.window_to})
            dims = {"Prompt": f"{row['prompt_name']}@{row['prompt_version']}", "Metric": row["metric"]}
            if mean is not None:
                result.metrics.append(Metric("EvalScore", round(mean, 4), dimensions=dims))
            if (mean is not None and baseline is not None and int(row["n"]) >= s.eval_min_samples
                    and baseline - mean > s.eval_regression_drop):
                result.regressions.append({"tenant_id": tenant_id, "prompt": dims["Prompt"], "metric": row["metric"],
                                           "mean": round(mean, 4), "baseline": round(baseline, 4),
                                           "baseline_runs": runs, "n": int(row["n"])})


def _drift(conn: Any, tenant_id: str, result: RunResult) -> dict[str, Any]:
    """The last day's questions (or the window's, if longer) against the week before (stratus.evals.drift),
    stored in eval_drift; returns the figures without the example questions."""
    from stratus.db import evals as store
    from stratus.db.connection import tenant_transaction

    split = min(result.window_from, result.window_to - DRIFT_RECENT)
    with tenant_transaction(tenant_id, conn):
        recent = store.questions_between(conn, tenant_id, split, result.window_to, DRIFT_MAX_QUESTIONS)
        baseline = store.questions_between(conn, tenant_id, split - DRIFT_BASELINE, split, DRIFT_MAX_QUESTIONS)
    from stratus.embeddings import get_embedder
    from stratus.evals.drift import EMBEDDING_MODEL, measure_drift

    embedder = get_embedder(EMBEDDING_MODEL)
    base_vectors = embedder.embed(baseline) if baseline else _no_vectors(embedder)
    recent_vectors = embedder.embed(recent) if recent else _no_vectors(embedder)
    report = measure_drift(base_vectors, recent_vectors, recent).to_json()
    with tenant_transaction(tenant_id, conn):  # with its example questions, under RLS
        store.upsert_drift(conn, result.run_id, tenant_id, result.window_to, report)
    # The run's summary (eval_runs, read across tenants) keeps the figures, not the questions.
    return {k: v for k, v in report.items() if k != "examples"}


def _no_vectors(embedder: Any) -> Any:
    import numpy as np

    return np.zeros((0, embedder.dimensions), dtype=np.float32)


def _run_metrics(result: RunResult) -> list[Metric]:
    out = [Metric("EvalSamples", result.samples, "Count"), Metric("EvalJudgeFailures", result.judge_failures, "Count"),
           Metric("EvalRegressions", len(result.regressions), "Count"),
           Metric("EvalRunSeconds", round(result.seconds, 3), "Seconds"),
           Metric("EvalJudgeCostUsd", round(result.judge_cost_usd, 6))]
    drifted = sum(1 for d in result.drift.values() if d.get("drifted"))
    out.append(Metric("EvalDriftedTenants", drifted, "Count"))
    out.append(Metric("EvalTenantsLeft", result.tenants_left, "Count"))
    out.append(Metric("RolloutsRolledBack", sum(r["action"] == "rolled_back" for r in result.rollouts), "Count"))
    return out
