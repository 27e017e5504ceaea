"""The report's pure parts: the window, percentiles from merged histograms, merging eval aggregates across
tenants, reading drift per tenant, and the page's empty sections."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from stratus.errors import InvalidInput
from stratus_tools.evals.report import (
    ReportData,
    drift_points,
    latency_percentiles,
    merge_aggregates,
    parse_since,
    time_step,
)
from stratus_tools.evals.report_html import render_page
from stratus_tools.evals.report_queries import bucket_of

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_since_accepts_durations_and_iso_dates() -> None:
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("90m", NOW) == NOW - timedelta(minutes=90)
    assert parse_since("2w", NOW) == NOW - timedelta(weeks=2)
    assert parse_since("2026-04-01", NOW) == datetime(2026, 4, 1, tzinfo=UTC)
    assert parse_since("2026-04-01T10:00+02:00", NOW) == datetime(2026, 4, 1, 8, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="--since: 'yesterday'"):
        parse_since("yesterday", NOW)
    with pytest.raises(InvalidInput, match="--until"):
        parse_since("7x", NOW, flag="--until")


def test_time_step_follows_the_span() -> None:
    assert time_step(NOW - timedelta(hours=30), NOW) == timedelta(hours=1)
    assert time_step(NOW - timedelta(days=7), NOW) == timedelta(days=1)
    assert time_step(NOW - timedelta(days=120), NOW) == timedelta(weeks=1)


def test_percentiles_from_histograms_merged_across_tenants_are_within_one_percent() -> None:
    rng = random.Random(1)
    tenants = [[rng.lognormvariate(4, 1) for _ in range(n)] for n in (500, 1500, 37)]
    merged: Counter[int] = Counter()
    for values in tenants:  # each tenant's histogram comes from its own query
        merged.update(Counter(bucket_of(v) for v in values))
    (step,) = latency_percentiles({"generate": merged})
    every = sorted(v for values in tenants for v in values)
    assert step.n == len(every)
    for q, got in ((0.5, step.p50), (0.95, step.p95), (0.99, step.p99)):
        exact = every[math.ceil(q * len(every)) - 1]
        assert abs(got - exact) / exact < 0.0101


def test_eval_means_are_weighted_by_samples_and_failures_are_not_zeros() -> None:
    row = {"run_id": 1, "prompt_name": "rag-answer", "prompt_version": 3, "metric": "faithfulness", "window_to": NOW}
    points = merge_aggregates([{**row, "tenant_id": "a", "n": 30, "mean": 0.9, "failures": 1},
                               {**row, "tenant_id": "b", "n": 10, "mean": 0.5, "failures": 0},
                               {**row, "tenant_id": "c", "n": 0, "mean": None, "failures": 4}])
    assert len(points) == 1
    assert points[0].prompt == "rag-answer@3" and points[0].n == 40 and points[0].failures == 5
    assert points[0].mean == pytest.approx(0.8)


def test_drift_is_read_per_tenant_in_time_order_and_unmeasured_runs_are_skipped() -> None:
    later = NOW + timedelta(hours=1)
    rows = [{"tenant": "b", "window_to": later, "report": {"centroid_shift": 0.1, "far_share": 0.3, "drifted": True,
                                                           "examples": [{"text": "q1"}, "q2"]}},
            {"tenant": "a", "window_to": NOW, "report": {"centroid_shift": 0.01, "far_share": 0.04}},
            {"tenant": "a", "window_to": later, "report": {"status": "insufficient_data", "drifted": False}}]
    points = drift_points(rows)
    assert [(p.scope, p.drifted, p.examples) for p in points] == [("a", False, []), ("b", True, ["q1", "q2"])]


def test_sections_without_data_say_so() -> None:
    data = ReportData(since=NOW - timedelta(days=1), until=NOW, step=timedelta(hours=1))
    page = render_page(data, {name: None for name in ("latency", "cost", "cache", "guard", "evals", "drift")})
    assert page.count("class='empty'") == 6 and "<img" not in page
