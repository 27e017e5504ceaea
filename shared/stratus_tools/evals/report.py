"""`stratus report`: a static HTML page (index.html + one PNG per plot) that an operator can open or
publish: latency percentiles per step, cost per tenant and model, cache hit rate over time, guard
verdicts per rail, online eval scores over time per prompt version, and input drift.

Reads every tenant (or the ones asked for) through its own tenant transaction, so the report sees exactly
what RLS lets each tenant's requests see; only the tenant list and eval_runs (no request content: used to
keep finished runs) are read across tenants. A section without data says so instead of drawing an empty chart.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stratus.db.connection import tenant_transaction
from stratus.errors import InvalidInput
from stratus_tools.evals import report_queries as store

_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
PERCENTILES = (0.50, 0.95, 0.99)


def parse_since(text: str, now: datetime | None = None, *, flag: str = "--since") -> datetime:
    """'30m', '24h', '7d', '2w' before now, or an ISO date/time (UTC when it names no zone)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{flag}: {text!r} is neither a duration (30m, 24h, 7d, 2w) nor an ISO date",
                           field=flag.lstrip("-")) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def time_step(since: datetime, until: datetime) -> timedelta:
    """Hourly points for up to two days, daily up to two months, weekly beyond."""
    span = until - since
    if span <= timedelta(days=2):
        return timedelta(hours=1)
    return timedelta(days=1) if span <= timedelta(days=62) else timedelta(weeks=1)


@dataclass
class StepLatency:
    step: str
    n: int
    p50: float
    p95: float
    p99: float


@dataclass
class EvalPoint:
    """One metric of one prompt version in one sampler run, merged over tenants (mean weighted by n)."""

    prompt: str  # "name@version"
    metric: str
    window_to: datetime
    n: int
    mean: float | None
    failures: int


@dataclass
class DriftPoint:
    window_to: datetime
    scope: str  # the tenant the sampler measured
    centroid_shift: float | None
    far_share: float | None
    drifted: bool
    examples: list[str]


@dataclass
class ReportData:
    since: datetime
    until: datetime
    step: timedelta
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)  # requests, errors, cost_usd
    latency: list[StepLatency] = field(default_factory=list)
    cost: list[dict[str, Any]] = field(default_factory=list)  # tenant, model, requests, tokens, cost_usd
    cache: dict[datetime, Counter[str]] = field(default_factory=dict)
    guard: dict[str, Counter[str]] = field(default_factory=dict)  # rail -> action -> count
    evals: list[EvalPoint] = field(default_factory=list)
    drift: list[DriftPoint] = field(default_factory=list)


def collect(conn: Any, since: datetime, until: datetime, tenants: Sequence[str] | None = None) -> ReportData:
    """Reads the window [since, until) for the given tenants (default: every tenant)."""
    if since >= until:
        raise InvalidInput(f"--since: {since.isoformat()} is not before {until.isoformat()}", field="since")
    if tenants is None:
        from stratus.gateway.tenancy import list_tenants

        tenants = [row["id"] for row in list_tenants(conn)]
    data = ReportData(since=since, until=until, step=time_step(since, until))
    histogram: dict[str, Counter[int]] = defaultdict(Counter)
    cache: dict[datetime, Counter[str]] = defaultdict(Counter)
    guard: dict[str, Counter[str]] = defaultdict(Counter)
    aggregates: list[dict[str, Any]] = []
    drift: list[dict[str, Any]] = []
    for tenant in tenants:
        with tenant_transaction(tenant, conn):
            data.tenants[tenant] = store.request_totals(conn, tenant, since, until)
            for step, bucket, count in store.latency_histogram(conn, tenant, since, until):
                histogram[step][bucket] += count
            data.cost += [{"tenant": tenant, **row} for row in store.cost_by_model(conn, tenant, since, until)]
            for when, status, count in store.cache_by_time(conn, tenant, since, until, data.step):
                cache[when][status] += count
            for rail, action, count in store.guard_actions(conn, tenant, since, until):
                guard[rail][action] += count
            aggregates += store.eval_aggregates(conn, tenant, since, until)
            drift += [{"tenant": tenant, **row} for row in store.eval_drift(conn, tenant, since, until)]
    data.latency = latency_percentiles(histogram)
    data.cache = dict(sorted(cache.items()))
    data.guard = dict(sorted(guard.items()))
    data.evals = merge_aggregates(aggregates)
    data.drift = drift_points(drift)
    return data


def latency_percentiles(histogram: dict[str, Counter[int]]) -> list[StepLatency]:
    """p50/p95/p99 per step from merged log-bucket histograms (within 1% of the exact figures); the
    whole request last, the steps by their median, slowest first."""
    out = []
    for step, buckets in histogram.items():
        n = sum(buckets.values())
        if not n:
            continue
        ordered = sorted(buckets.items())
        values = []
        for q in PERCENTILES:
            rank, seen = max(1, math.ceil(q * n - 1e-9)), 0  # the nearest-rank definition
            for bucket, count in ordered:
                seen += count
                if seen >= rank:
                    values.append(store.bucket_value(bucket))
                    break
        out.append(StepLatency(step, n, *values))
    out.sort(key=lambda s: (s.step == store.TOTAL_STEP, -s.p50))
    return out


def merge_aggregates(rows: list[dict[str, Any]]) -> list[EvalPoint]:
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        # The sampler stores requests that named no prompt under ('', 0).
        prompt = f"{row['prompt_name']}@{row['prompt_version']}" if row["prompt_name"] else "(no prompt)"
        key = (row["run_id"], prompt, row["metric"])
        acc = merged.setdefault(key, {"window_to": row["window_to"], "n": 0, "weighted": 0.0, "failures": 0})
        acc["failures"] += int(row["failures"])
        if row["mean"] is not None and row["n"] > 0:
            acc["n"] += int(row["n"])
            acc["weighted"] += float(row["mean"]) * int(row["n"])
    points = [EvalPoint(prompt, metric, acc["window_to"], acc["n"], acc["weighted"] / acc["n"] if acc["n"] else None,
                        acc["failures"]) for (_, prompt, metric), acc in merged.items()]
    return sorted(points, key=lambda p: (p.metric, p.prompt, p.window_to))


def drift_points(rows: list[dict[str, Any]]) -> list[DriftPoint]:
    """Drift as the sampler stored it in eval_drift ({tenant, window_to, report}), in time order. Runs with
    too little data to measure ("insufficient_data": no figures) are skipped."""
    points = []
    for row in sorted(rows, key=lambda r: (r["window_to"], r["tenant"])):
        report = row["report"] if isinstance(row.get("report"), dict) else {}
        shift, far = _number(report.get("centroid_shift")), _number(report.get("far_share"))
        if shift is None and far is None:
            continue
        points.append(DriftPoint(row["window_to"], row["tenant"], shift, far, bool(report.get("drifted")),
                                 [_example_text(e) for e in report.get("examples") or []][:5]))
    return points


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _example_text(example: Any) -> str:
    if isinstance(example, dict):
        return str(example.get("text") or example.get("question") or example)
    return str(example)


def write_report(data: ReportData, out: Path) -> tuple[Path, list[str]]:
    """Writes out/index.html and its images; returns the page's path and the images drawn."""
    from stratus_tools.evals import report_plots as plots
    from stratus_tools.evals.report_html import render_page

    out.mkdir(parents=True, exist_ok=True)
    images = plots.render_all(data, out)
    for name, image in images.items():
        if image is None:  # a chart left from an earlier report into the same folder would mislead
            (out / f"{name}.png").unlink(missing_ok=True)
    page = out / "index.html"
    page.write_text(render_page(data, images), encoding="utf-8")
    return page, [image for image in images.values() if image]
