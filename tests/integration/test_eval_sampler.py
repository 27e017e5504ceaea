"""Online evaluation end to end: the gateway keeps the content of sampled requests (PII-redacted), the
sampler scores them (checks and the offline judge), a rerun of the same window counts nothing twice, a
hosted judge's verdict (over the real OpenAI wire) is validated and stored while one that answers garbage
is recorded as a failure rather than a zero, a drop under the trailing baseline is a regression, and the
template's schedule runs the eval_sampler function locally."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from stratus.config import Settings, load_settings
from stratus.db import evals as store
from stratus.db.connection import connect, tenant_transaction
from stratus.db.records import SourceObject
from stratus.evals.sampler import SETTLE, run_sampler
from stratus.evals.sampling import is_sampled, sample_point
from stratus.ingest.pipeline import ingest_document
from tests.conftest import load_function_app
from tests.integration.gateway_support import auth, tenant_with_key
from tests.support.upstreams import OpenAIUpstream

ROOT = Path(__file__).resolve().parents[2]
PRICING = (ROOT / "examples" / "corpus" / "pricing.html").read_bytes()


def test_sampling_is_a_stable_function_of_the_request_id() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    picked = [i for i in ids if is_sampled(i, 0.02)]
    assert 0.015 < len(picked) / len(ids) < 0.025  # about the rate
    assert picked == [i for i in ids if is_sampled(i, 0.02)]  # and the same every time
    assert sample_point("req-1") == sample_point("req-1") and not is_sampled("req-1", 0.0)


@pytest.fixture(scope="module")
def settings(pg_url: str) -> Settings:
    return load_settings(database_url=pg_url, eval_sample_rate=1.0, cache_enabled=False)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    from stratus.gateway.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def conn(pg_url: str) -> Iterator[Any]:
    c = connect(pg_url)
    yield c
    c.close()


def _tenant(pg_url: str) -> tuple[str, dict[str, str]]:
    tenant, key = tenant_with_key(pg_url, "ev")
    ingest_document(tenant, "pricing.html", PRICING, SourceObject(tenant, "pricing.html", etag=uuid.uuid4().hex,
                                                                  size=len(PRICING)))
    return tenant, auth(key)


def _ask(client: TestClient, headers: dict[str, str], question: str) -> str:
    """A streamed RAG answer (answered in the gateway; the workflow needs the local stack). Its request id."""
    r = client.post("/v1/chat/completions", headers=headers,
                    json={"model": "rag/fast", "messages": [{"role": "user", "content": question}], "stream": True})
    assert r.status_code == 200, r.text
    assert "data: [DONE]" in r.text
    return r.headers["x-request-id"]


def _scores(conn: Any, tenant: str) -> dict[tuple[str, str], dict[str, Any]]:
    with tenant_transaction(tenant, conn):
        rows = conn.execute("SELECT request_id, metric, score, passed, scorer, error, run_id, details FROM eval_scores "
                            "WHERE tenant_id = %s", (tenant,)).fetchall()
    return {(r[0], r[1]): {"score": r[2], "passed": r[3], "scorer": r[4], "error": r[5], "run": r[6], "details": r[7]}
            for r in rows}


def test_sampled_requests_are_kept_redacted_scored_once_and_aggregated(client: TestClient, settings: Settings,
                                                                      pg_url: str, conn: Any) -> None:
    tenant, headers = _tenant(pg_url)
    rid = _ask(client, headers, "How much does the Team plan cost per month? Reply to ada.lovelace@example.com")
    _ask(client, headers, "Which plan includes priority support?")
    with tenant_transaction(tenant, conn):
        samples, in_window = store.samples_between(conn, tenant, datetime.now(UTC) - timedelta(hours=1),
                                                   datetime.now(UTC), 10)
    assert len(samples) == in_window == 2
    kept = next(s for s in samples if s["request_id"] == rid)
    assert "ada.lovelace@example.com" not in kept["question"] and "<EMAIL_1>" in kept["question"]
    assert kept["prompt_name"] == "rag-answer" and kept["chunk_ids"] and kept["cited_chunk_ids"]

    result = run_sampler(settings=settings, conn=conn, tenants=[tenant])
    assert result.samples == 0  # the window ends 10 s ago: samples still being written wait for the next run
    result = run_sampler(settings=settings, conn=conn, tenants=[tenant], now=datetime.now(UTC) + SETTLE)
    assert result.samples == 2 and result.judge_failures == 0
    scores = _scores(conn, tenant)
    assert scores[(rid, "citations_retrieved")]["passed"] is True
    assert scores[(rid, "groundedness")]["passed"] is True  # the offline provider quotes its passages
    assert scores[(rid, "judge_faithfulness")]["scorer"] == "judge-offline"
    assert {"refusal_consistent", "output_pii", "latency", "cost", "judge_relevance"} <= {m for _, m in scores}

    # The same window again (a run that crashed before finishing): same rows, nothing counted twice.
    with conn.transaction():
        conn.execute("UPDATE eval_runs SET status = 'failed' WHERE id = %s", (result.run_id,))
    again = run_sampler(settings=settings, conn=conn, tenants=[tenant], now=result.window_to)
    assert again.window_from == result.window_from and again.samples == 2
    assert len(_scores(conn, tenant)) == len(scores)
    with tenant_transaction(tenant, conn):
        aggregates = conn.execute("SELECT metric, n FROM eval_aggregates WHERE tenant_id = %s AND run_id = %s",
                                  (tenant, again.run_id)).fetchall()
    assert dict(aggregates)["groundedness"] == 2
    assert {m.name for m in again.metrics} >= {"EvalScore", "EvalSamples", "EvalRegressions"}


def _hosted_judge_run(pg_url: str, conn: Any, tmp_path: Path, answers: list[str],
                      wrap: Any = None) -> tuple[dict[Any, Any], Any]:
    """Samples r-judge-0.. (one per answer) judged by a hosted judge: the OpenAI SDK against the loopback
    server, which echoes the rendered rubric back ("Echo: Question: ... Answer to grade: <answer>")."""
    from stratus.generation.service import get_router

    with OpenAIUpstream() as upstream:
        catalog = {"default_alias": "fast",
                   "deployments": {"offline": {"provider": "offline", "model": "stratus-offline-extractive",
                                               "price": {"input": 0, "output": 0}},
                                   "loop": {"provider": "openai", "model": "gpt-loop", "base_url": upstream.base_url,
                                            "price": {"input": 1.0, "output": 1.0}}},
                   "aliases": {"fast": ["offline"], "judge": ["loop"]}}
        (tmp_path / "models.yaml").write_text(json.dumps(catalog))
        s = load_settings(database_url=pg_url, models_file=str(tmp_path / "models.yaml"), eval_judge_model="judge",
                          openai_api_key="sk-loop", provider_mode="hosted", retry_attempts=0,
                          eval_judge_concurrency=4)
        tenant, _ = tenant_with_key(pg_url, "evj")
        now = datetime.now(UTC)
        with tenant_transaction(tenant, conn):
            for i, answer in enumerate(answers):
                store.insert_sample(conn, {"tenant_id": tenant, "request_id": f"r-judge-{i}", "mode": "chat",
                                           "prompt_name": "chat", "prompt_version": 1, "question": "What is 2+2?",
                                           "answer": answer, "latency_ms": 10.0, "cost_usd": 0.0,
                                           "created_at": now - timedelta(seconds=1)})
        router = get_router(s)
        result = run_sampler(settings=s, conn=conn, tenants=[tenant], now=now, since=now - timedelta(minutes=1),
                             router=wrap(router) if wrap else router)
    return _scores(conn, tenant), result


def test_a_judge_that_does_not_answer_json_is_a_recorded_failure_not_a_zero(pg_url: str, conn: Any,
                                                                           tmp_path: Path) -> None:
    scores, result = _hosted_judge_run(pg_url, conn, tmp_path, ["It is 4."])
    judged = scores[("r-judge-0", "judge_faithfulness")]
    assert judged["score"] is None and judged["passed"] is None and "no JSON object" in judged["error"]
    assert judged["scorer"] == "judge-rubric@1" and result.judge_failures == 2
    assert result.judge_cost_usd > 0  # a failed verdict was still a paid call
    assert scores[("r-judge-0", "latency")]["passed"] is True  # the checks still ran


def test_a_hosted_judges_verdict_is_validated_and_stored_on_the_unit_scale(pg_url: str, conn: Any,
                                                                           tmp_path: Path) -> None:
    # The loopback server echoes the rubric, so the verdict it returns is the one this answer carries.
    scores, result = _hosted_judge_run(pg_url, conn, tmp_path,
                                       ['{"faithfulness": 4, "relevance": 2, "reason": "partly off topic"}'])
    assert result.judge_failures == 0 and result.judge_cost_usd > 0
    faithful, relevant = scores[("r-judge-0", "judge_faithfulness")], scores[("r-judge-0", "judge_relevance")]
    assert (faithful["score"], faithful["passed"], faithful["scorer"]) == (0.75, True, "judge-rubric@1")
    assert (relevant["score"], relevant["passed"]) == (0.25, False)
    assert relevant["details"]["reason"] == "partly off topic"


class _Gathering:
    """A router that holds each call until `parties` calls are waiting together, then lets them all on:
    calls made one at a time break the barrier (after its timeout) instead of passing it."""

    def __init__(self, router: Any, parties: int) -> None:
        import threading

        self.catalog, self._router = router.catalog, router
        self._barrier = threading.Barrier(parties, timeout=20)

    def complete(self, alias: str, request: Any) -> Any:
        self._barrier.wait()
        return self._router.complete(alias, request)


def test_hosted_judge_calls_run_side_by_side_and_each_verdict_stays_with_its_sample(pg_url: str, conn: Any,
                                                                                    tmp_path: Path) -> None:
    answers = [json.dumps({"faithfulness": 1 + i % 5, "relevance": 5 - i % 5, "reason": f"sample {i}"})
               for i in range(8)]
    scores, result = _hosted_judge_run(pg_url, conn, tmp_path, answers, wrap=lambda r: _Gathering(r, 4))
    assert result.samples == 8 and result.judge_failures == 0
    for i in range(8):
        assert scores[(f"r-judge-{i}", "judge_faithfulness")]["score"] == (i % 5) / 4
        assert scores[(f"r-judge-{i}", "judge_relevance")]["details"]["reason"] == f"sample {i}"


def test_a_drop_under_the_trailing_baseline_is_a_regression(pg_url: str, conn: Any, settings: Settings) -> None:
    tenant, _ = tenant_with_key(pg_url, "evr")
    base = datetime.now(UTC) - timedelta(days=2)
    s = settings.model_copy(update={"eval_min_samples": 1, "eval_baseline_runs": 3})
    runs = {}
    with conn.transaction():
        for h in (3, 2):
            runs[h] = store.start_run(conn, base - timedelta(hours=h + 1), base - timedelta(hours=h))
            store.finish_run(conn, runs[h], "done", {})
        crashed = store.start_run(conn, base - timedelta(hours=1), base - timedelta(minutes=30))
        store.finish_run(conn, crashed, "failed", {})
    with tenant_transaction(tenant, conn):
        for h in (3, 2):  # two earlier windows where the prompt scored 0.9
            store.upsert_aggregate(conn, {"run_id": runs[h], "tenant_id": tenant, "prompt_name": "chat",
                                          "prompt_version": 1, "metric": "latency", "n": 10, "mean": 0.9,
                                          "failures": 0, "window_to": base - timedelta(hours=h)})
        # A run that failed part-way aggregated a window its rerun aggregates again: not in the baseline.
        store.upsert_aggregate(conn, {"run_id": crashed, "tenant_id": tenant, "prompt_name": "chat",
                                      "prompt_version": 1, "metric": "latency", "n": 10, "mean": 0.0,
                                      "failures": 0, "window_to": base - timedelta(minutes=30)})
    now = base + timedelta(minutes=5)
    with tenant_transaction(tenant, conn):
        store.insert_sample(conn, {"tenant_id": tenant, "request_id": "slow", "mode": "chat", "prompt_name": "chat",
                                   "prompt_version": 2, "question": "Hi?", "answer": "Hello.", "latency_ms": 99_999.0,
                                   "cost_usd": 0.0, "created_at": base})
    result = run_sampler(settings=s, conn=conn, tenants=[tenant], now=now, since=base - timedelta(minutes=1))
    regression = next(r for r in result.regressions if r["metric"] == "latency")
    assert regression["prompt"] == "chat@2" and regression["mean"] == 0.0 and regression["baseline"] == 0.9
    assert regression["baseline_runs"] == 2


def _jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (ROOT / "evals" / name).read_text().splitlines() if line.strip()]


def _seed_questions(conn: Any, tenant: str, questions: list[str], at: datetime, prefix: str) -> None:
    with tenant_transaction(tenant, conn):
        for i, question in enumerate(questions):
            store.insert_sample(conn, {"tenant_id": tenant, "request_id": f"{prefix}-{i}", "mode": "chat",
                                       "prompt_name": "chat", "prompt_version": 1, "question": question,
                                       "answer": "-", "latency_ms": 10.0, "cost_usd": 0.0,
                                       "created_at": at - timedelta(seconds=i)})


@pytest.mark.parametrize("shifted", [False, True])
def test_a_run_reports_drift_of_the_last_day_against_the_week_before(pg_url: str, conn: Any, settings: Settings,
                                                                      shifted: bool) -> None:
    """Last day: support questions the baseline did not ask, or insults. Only one sample is in the run's own
    window, so the last day (not the window) is what drift measures."""
    tenant, _ = tenant_with_key(pg_url, "evd")
    support = sorted({q for row in _jsonl("cache/pairs.jsonl") for q in (row["a"], row["b"])})
    baseline, held_out = support[::2], support[1::2]
    recent = [row["text"] for row in _jsonl("guard/toxicity_cases.jsonl")][:60] if shifted else held_out[:60]
    now = datetime.now(UTC)
    _seed_questions(conn, tenant, baseline, now - timedelta(days=3), "base")
    _seed_questions(conn, tenant, recent, now - timedelta(hours=6), "recent")
    _seed_questions(conn, tenant, ["How do I reset my password?"], now - timedelta(minutes=1), "window")
    result = run_sampler(settings=settings, conn=conn, tenants=[tenant], now=now, since=now - timedelta(minutes=10))
    assert result.samples == 1
    drift = result.drift[tenant]
    assert drift["status"] == "ok" and drift["drifted"] is shifted, drift
    with tenant_transaction(tenant, conn):
        (report,) = conn.execute("SELECT report FROM eval_drift WHERE run_id = %s AND tenant_id = %s",
                                 (result.run_id, tenant)).fetchone()
    assert report["drifted"] is shifted and report["centroid_shift"] == drift["centroid_shift"]
    if shifted:
        assert report["examples"] and all(e["text"] in recent for e in report["examples"])
        assert next(m for m in result.metrics if m.name == "EvalDriftedTenants").value >= 1
    with conn.transaction():
        stored = store.get_run(conn, result.run_id)
    # The run's summary is read across tenants: figures, no questions.
    assert stored is not None and stored["summary"]["drift"][tenant]["drifted"] is shifted
    assert "examples" not in stored["summary"]["drift"][tenant]
    with tenant_transaction("some-other-tenant", conn):  # RLS: another tenant sees none of it
        assert conn.execute("SELECT count(*) FROM eval_drift WHERE run_id = %s", (result.run_id,)).fetchone() == (0,)


def test_over_the_cap_a_hash_chosen_subset_is_scored_and_the_rest_counted(pg_url: str, conn: Any,
                                                                          settings: Settings) -> None:
    tenant, _ = tenant_with_key(pg_url, "evc")
    now = datetime.now(UTC)
    _seed_questions(conn, tenant, [f"Question number {i}?" for i in range(6)], now - timedelta(minutes=1), "cap")
    s = settings.model_copy(update={"eval_max_samples_per_run": 2})
    first = run_sampler(settings=s, conn=conn, tenants=[tenant], now=now, since=now - timedelta(minutes=10))
    assert first.samples == 2 and first.unscored == 4 and first.summary()["unscored"] == 4
    picked = {r for r, _ in _scores(conn, tenant)}
    again = run_sampler(settings=s, conn=conn, tenants=[tenant], now=now, since=now - timedelta(minutes=10))
    assert again.samples == 2 and {r for r, _ in _scores(conn, tenant)} == picked  # the same two


def test_the_templates_schedule_runs_the_eval_sampler_function_locally(pg_url: str) -> None:
    from stratus_tools.local.stack import LocalStack

    with LocalStack(load_settings(data_dir=ROOT / ".stratus" / "test-eval-schedule")) as stack:
        runner = stack.schedule("EvalSamplerFunction")
        assert runner.schedule.expression == "rate(15 minutes)" and runner.schedule.period_s == 900
        out = runner.run_once()  # as EventBridge would: the function, through the local Lambda
    assert out["run_id"] > 0 and {"samples", "scores", "judge_failures", "regressions", "drift"} <= set(out)


def test_only_rate_schedules_run_locally() -> None:
    from stratus_tools.local.resources import rate_seconds

    assert rate_seconds("rate(1 hour)") == 3600 and rate_seconds("rate(2 days)") == 172_800
    with pytest.raises(ValueError, match="only rate"):
        rate_seconds("cron(0 12 * * ? *)")


@pytest.mark.parametrize("ample_checks", [2, 1], ids=["between-tenants", "inside-a-tenant"])
def test_a_run_near_its_deadline_stops_as_partial_and_the_next_run_resumes_its_window(
        pg_url: str, conn: Any, settings: Settings, ample_checks: int) -> None:
    tenants = [tenant_with_key(pg_url, f"evd{i}")[0] for i in range(3)]
    with conn.transaction():
        latest = store.last_finished_run(conn)
    # This test's window must be the latest finished one (the resume reads the latest run of all).
    end = max(datetime.now(UTC), latest["window_to"] if latest else datetime.now(UTC)) + timedelta(seconds=1)
    for tenant in tenants:
        _seed_questions(conn, tenant, ["How do I rotate my API key?", "What does the Team plan cost?"],
                        end - timedelta(seconds=5), tenant)
    calls = iter(range(1000))
    # Time left, as the handler reads it from the Lambda context: checked before a tenant and before each
    # further sample. Ample for 2 checks: the first tenant (2 samples) is done, the run stops before the
    # second. For 1: the run stops after the first tenant's first sample, and that tenant is not done.
    time_left = lambda: 600.0 if next(calls) < ample_checks else 5.0  # noqa: E731
    done_first = 1 if ample_checks == 2 else 0
    runs = []
    try:
        first = run_sampler(settings=settings, conn=conn, tenants=tenants, now=end, since=end - timedelta(minutes=1),
                            time_left=time_left)
        runs.append(first.run_id)
        assert (first.tenants_done, first.tenants_left, first.samples) == (tenants[:done_first], 3 - done_first,
                                                                           1 + done_first)
        with conn.transaction():
            assert store.get_run(conn, first.run_id)["status"] == "partial"
        resumed = run_sampler(settings=settings, conn=conn, tenants=tenants)
        runs.append(resumed.run_id)
        assert resumed.resumed and (resumed.window_from, resumed.window_to) == (first.window_from, first.window_to)
        assert resumed.samples == 6 - 2 * done_first and resumed.tenants_left == 0  # not a done tenant again
        assert sorted(resumed.tenants_done) == sorted(tenants)
        with conn.transaction():
            assert store.get_run(conn, resumed.run_id)["status"] == "done"
        after = run_sampler(settings=settings, conn=conn, tenants=tenants, now=end + timedelta(minutes=1))
        runs.append(after.run_id)
        assert not after.resumed and after.window_from == end and after.samples == 0
        with tenant_transaction(tenants[0], conn):  # each tenant aggregated once, by the run that scored it
            aggregated = conn.execute("SELECT DISTINCT run_id FROM eval_aggregates WHERE tenant_id = %s",
                                      (tenants[0],)).fetchall()
        assert aggregated == [(first.run_id if done_first else resumed.run_id,)]
    finally:  # later tests take their windows from the latest finished run: leave none of these behind
        with connect(pg_url, app_role=False) as owner, owner.transaction():
            for table in ("eval_scores", "eval_aggregates", "eval_drift"):
                owner.execute(f"DELETE FROM {table} WHERE run_id = ANY(%s)", (runs,))
            owner.execute("DELETE FROM eval_runs WHERE id = ANY(%s)", (runs,))


class _LambdaContext:
    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.mark.parametrize("emit", [True, False])
def test_the_handler_stops_at_the_lambda_deadline_and_emits_its_metrics_when_configured(
        pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, emit: bool) -> None:

    from stratus.config import reset_settings

    tenant_with_key(pg_url, "evh")  # at least one tenant for the run to leave
    monkeypatch.setenv("STRATUS_EMIT_METRICS", "true" if emit else "false")
    reset_settings()
    app = load_function_app("eval_sampler")
    capsys.readouterr()
    out: dict[str, Any] = {}
    try:
        # 5 s left: under the stop margin, so the run leaves every tenant to the next one.
        out = app.handler({"source": "aws.events", "detail-type": "Scheduled Event"}, _LambdaContext(5000))
        json.dumps(out)
        assert out["samples"] == 0 and out["tenants_left"] >= 1 and out["tenants_done"] == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
        names = {m["Name"] for doc in lines for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        assert names == ({"EvalSamples", "EvalJudgeFailures", "EvalRegressions", "EvalRunSeconds", "EvalJudgeCostUsd",
                          "EvalDriftedTenants", "EvalTenantsLeft", "RolloutsRolledBack"} if emit else set())
    finally:  # a partial run would be resumed by the next test's default window: remove it
        monkeypatch.delenv("STRATUS_EMIT_METRICS")
        reset_settings()
        with connect(pg_url, app_role=False) as owner, owner.transaction():
            owner.execute("DELETE FROM eval_runs WHERE id = %s", (out.get("run_id"),))
