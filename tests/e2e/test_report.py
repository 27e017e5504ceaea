"""`stratus report`: seeded traces and eval rows for two tenants become a page that headless Chromium
renders with non-empty charts; a window without data renders the "no data" sentences and no chart."""

from __future__ import annotations

import math
import random
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stratus_tools.cli import main
from tests.conftest import create_tenant

NOW = datetime.now(UTC).replace(microsecond=0)
STEPS = ("admit", "retrieve", "generate")
RAILS = ("injection", "pii", "groundedness")
CHARTS = ("latency", "cost", "cache", "guard", "evals", "drift")


def _seed_traces(url: str, tenant: str, rng: random.Random, count: int) -> list[float]:
    """`count` chat requests over the last 40 hours; returns their total latencies."""
    from stratus.db import traces as store
    from stratus.db.connection import connect, tenant_transaction
    from stratus.gateway.traces import TraceRecord
    from stratus.workflow_state import GuardSummary, Verdict

    totals = []
    conn = connect(url)
    try:
        with tenant_transaction(tenant, conn):
            for i in range(count):
                timings = {"admit": rng.uniform(0.5, 3), "retrieve": rng.lognormvariate(3, 0.4),
                           "generate": rng.lognormvariate(6, 0.5)}
                total = sum(timings.values()) + rng.uniform(1, 5)
                totals.append(total)
                verdicts = [Verdict(rail="injection", stage="input", action="block" if i % 17 == 0 else "pass",
                                    score=0.5),
                            Verdict(rail="pii", stage="input", action="redact" if i % 3 == 0 else "pass", score=0.9),
                            Verdict(rail="groundedness", stage="output", action="flag" if i % 5 == 0 else "pass",
                                    score=0.4)]
                record = TraceRecord(
                    request_id=f"req-{tenant}-{i}", tenant_id=tenant, route="/v1/chat/completions", method="POST",
                    status_code=200, model_alias="fast" if i % 4 else "smart", input_tokens=300, output_tokens=80,
                    cost_usd=0.0004 if i % 4 else 0.003, cache_status=("hit_exact", "hit_semantic", "miss",
                                                                       "miss", "bypass")[i % 5],
                    timings_ms=timings, latency_ms=total, guard=GuardSummary(verdicts=verdicts).model_dump(),
                    created_at=NOW - timedelta(minutes=40 * 60 * i / count + 1))
                store.insert_trace(conn, record.model_dump())
    finally:
        conn.close()
    return totals


def _seed_evals(url: str, tenants: list[str]) -> None:
    """Four finished sampler runs, six hours apart: aggregates and drift per tenant."""
    from psycopg.types.json import Jsonb

    from stratus.db.connection import connect, tenant_transaction

    conn = connect(url)
    try:
        for run in range(4):
            window_to = NOW - timedelta(hours=6 * (4 - run))
            drift = {t: {"centroid_shift": 0.02 + 0.03 * run, "far_share": 0.05 + 0.1 * run, "drifted": run == 3,
                         "examples": [f"question <about> topic {run}"]} for t in tenants}
            with conn.transaction():
                run_id = conn.execute(
                    "INSERT INTO eval_runs (window_from, window_to, status, finished_at, summary) "
                    "VALUES (%s, %s, 'done', %s, %s) RETURNING id",
                    (window_to - timedelta(hours=6), window_to, window_to, Jsonb({}))).fetchone()[0]
            for t_index, tenant in enumerate(tenants):
                with tenant_transaction(tenant, conn):
                    conn.execute("INSERT INTO eval_drift (run_id, tenant_id, window_to, report) "
                                 "VALUES (%s, %s, %s, %s)", (run_id, tenant, window_to, Jsonb(drift[tenant])))
                    for version in (1, 2):
                        for metric, base in (("judge_faithfulness", 0.8), ("citations_retrieved", 0.9)):
                            conn.execute(
                                "INSERT INTO eval_aggregates (run_id, tenant_id, prompt_name, prompt_version, metric, "
                                "n, mean, failures, window_to) VALUES (%s, %s, 'rag-answer', %s, %s, %s, %s, %s, %s)",
                                (run_id, tenant, version, metric, 10 + t_index, base - 0.05 * version + 0.02 * run,
                                 run % 2, window_to))
    finally:
        conn.close()


def _screenshot(page: Path, png: Path, tmp_path: Path) -> np.ndarray:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: `make chromium` installs it (Debian package chromium)")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={png}",
                    "--window-size=1280,4000", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=180)
    assert png.exists() and png.stat().st_size > 0
    return _rgb(png)


def _rgb(png: Path) -> np.ndarray:
    from matplotlib.image import imread

    image = imread(png)
    return np.round(image[..., :3] * 255).astype(np.uint8)


def _coloured_pixels(rgb: np.ndarray) -> int:
    """Pixels that are clearly not grey: chart bars, lines and areas (text is black or grey)."""
    spread = rgb.max(axis=2).astype(int) - rgb.min(axis=2).astype(int)
    return int((spread > 60).sum())


def _distinct_colours(rgb: np.ndarray) -> int:
    return len(np.unique(rgb.reshape(-1, 3), axis=0))


@pytest.fixture(scope="module")
def seeded(pg_url: str) -> dict[str, Any]:
    rng = random.Random(6)
    tenants = [create_tenant(pg_url, "report"), create_tenant(pg_url, "report")]
    totals = _seed_traces(pg_url, tenants[0], rng, 90) + _seed_traces(pg_url, tenants[1], rng, 60)
    _seed_evals(pg_url, tenants)
    return {"tenants": tenants, "totals": totals}


def test_report_renders_in_headless_chromium(seeded: dict[str, Any], tmp_path: Path) -> None:
    # Given two tenants' traces and eval runs; When the report is written for them over the last 2 days
    out = tmp_path / "report"
    args = ["report", "--since", "2d", "--out", str(out)]
    for tenant in seeded["tenants"]:
        args += ["--tenant", tenant]
    assert main(args) == 0

    # Then every chart exists and has content
    page = out / "index.html"
    text = page.read_text(encoding="utf-8")
    for chart in CHARTS:
        assert f"src='{chart}.png'" in text
        rgb = _rgb(out / f"{chart}.png")
        non_white = float((rgb.min(axis=2) < 245).mean())
        assert _distinct_colours(rgb) > 50 and non_white > 0.03, chart
        assert _coloured_pixels(rgb) > 2000, chart
    assert "No traces" not in text and "class='empty'" not in text
    for name in (*STEPS, "total", "injection", "pii", "groundedness", "rag-answer@1", "rag-answer@2", "smart"):
        assert name in text
    assert "question &lt;about&gt; topic 3" in text  # examples are escaped

    # And Chromium renders the page with every chart in it, at about its natural size: an image that did not
    # load, or a chart pushed below the 4000 px window, would take its coloured pixels with it
    shot = _screenshot(page, tmp_path / "report.png", tmp_path)
    assert shot.shape[:2] == (4000, 1280)
    charts_area = sum(_coloured_pixels(_rgb(out / f"{c}.png")) for c in CHARTS)
    smallest = min(_coloured_pixels(_rgb(out / f"{c}.png")) for c in CHARTS)
    assert charts_area - 0.5 * smallest < _coloured_pixels(shot) < 1.05 * charts_area


def test_empty_window_says_so_and_draws_nothing(seeded: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "empty"
    assert main(["report", "--since", "2000-01-01", "--until", "2000-01-02", "--out", str(out)]) == 0
    text = (out / "index.html").read_text(encoding="utf-8")
    assert text.count("class='empty'") == len(CHARTS)
    assert not list(out.glob("*.png"))
    shot = _screenshot(out / "index.html", tmp_path / "empty.png", tmp_path)
    assert _coloured_pixels(shot) < 20000  # the yellow notes' text only, no chart


def test_latency_percentiles_match_the_exact_ones(seeded: dict[str, Any], pg_url: str) -> None:
    from stratus.db.connection import connect
    from stratus_tools.evals.report import collect

    conn = connect(pg_url)
    try:
        data = collect(conn, NOW - timedelta(days=2), NOW + timedelta(minutes=1), seeded["tenants"])
    finally:
        conn.close()
    totals = sorted(seeded["totals"])
    total = next(s for s in data.latency if s.step == "total")
    assert total.n == len(totals) == 150
    for q, got in ((0.5, total.p50), (0.95, total.p95), (0.99, total.p99)):
        exact = totals[math.ceil(q * len(totals)) - 1]  # nearest rank
        assert abs(got - exact) / exact < 0.011, (q, got, exact)  # within the histogram's 1% buckets
    assert [s.step for s in data.latency] == ["generate", "retrieve", "admit", "total"]
    assert data.tenants[seeded["tenants"][0]]["requests"] == 90
    # Merged across tenants, weighted by samples: the two tenants have 10 and 11 samples per point.
    point = next(p for p in data.evals if p.prompt == "rag-answer@2" and p.metric == "citations_retrieved")
    assert point.n == 21 and point.mean == pytest.approx(0.8, abs=1e-6)
    assert {p.scope for p in data.drift} == set(seeded["tenants"]) and any(p.drifted for p in data.drift)
