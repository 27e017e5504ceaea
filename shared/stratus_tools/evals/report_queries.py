"""Read-only queries behind `stratus report` (SQL adapter). Tenant-owned tables are read inside the caller's
tenant transaction (RLS), eval_aggregates and eval_drift joined to eval_runs (no request content) to keep
finished runs only.

Everything is aggregated in the database, so a report over millions of traces moves kilobytes: latencies
come back as log-scale histograms (counts per bucket) that the caller merges across tenants before taking
percentiles, because percentiles themselves cannot be merged.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from stratus.db.evals import FINISHED

Connection = psycopg.Connection

# Bucket b holds latencies in [BASE**b, BASE**(b+1)) ms: a percentile read from the merged histogram is within
# 1% of the exact one (the bucket's geometric middle is reported).
LATENCY_BUCKET_BASE = 1.02
TOTAL_STEP = "total"  # the whole request (traces.latency_ms), beside the steps of timings_ms
CACHE_STATUSES = ("hit_exact", "hit_semantic", "miss")  # "bypass": the cache was not consulted

_WINDOW = "tenant_id = %(tenant)s AND created_at >= %(since)s AND created_at < %(until)s"


def request_totals(conn: Connection, tenant_id: str, since: datetime, until: datetime) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE status = 'error'), coalesce(sum(cost_usd), 0)::float8 "
        f"FROM traces WHERE {_WINDOW}", _params(tenant_id, since, until)).fetchone()
    assert row is not None
    return {"requests": int(row[0]), "errors": int(row[1]), "cost_usd": float(row[2])}


def latency_histogram(conn: Connection, tenant_id: str, since: datetime, until: datetime) -> list[tuple[str, int, int]]:
    """(step, bucket, count) for every step in timings_ms and for the whole request (TOTAL_STEP)."""
    rows = conn.execute(
        "SELECT step, floor(ln(greatest(ms, 0.001)) / ln(%(base)s))::int AS bucket, count(*) FROM ("
        f"  SELECT e.key AS step, e.value::float8 AS ms FROM traces, jsonb_each(timings_ms) e "
        f"   WHERE {_WINDOW} AND jsonb_typeof(e.value) = 'number'"
        f"  UNION ALL SELECT %(total)s, latency_ms::float8 FROM traces WHERE {_WINDOW}"
        ") t GROUP BY 1, 2",
        {**_params(tenant_id, since, until), "base": LATENCY_BUCKET_BASE, "total": TOTAL_STEP}).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]


def bucket_value(bucket: int) -> float:
    """The geometric middle of a latency bucket, in ms."""
    return float(LATENCY_BUCKET_BASE ** (bucket + 0.5))


def bucket_of(ms: float) -> int:
    """The bucket the query above puts `ms` in (for tests and callers that merge their own values)."""
    return math.floor(math.log(max(ms, 0.001)) / math.log(LATENCY_BUCKET_BASE))


def cost_by_model(conn: Connection, tenant_id: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Requests, tokens and spend per model alias (requests that named no model are left out)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT model_alias AS model, count(*) AS requests, sum(input_tokens)::bigint AS input_tokens, "
            "sum(output_tokens)::bigint AS output_tokens, sum(cost_usd)::float8 AS cost_usd "
            f"FROM traces WHERE {_WINDOW} AND model_alias IS NOT NULL GROUP BY 1 ORDER BY 1",
            _params(tenant_id, since, until))
        return cur.fetchall()


def cache_by_time(conn: Connection, tenant_id: str, since: datetime, until: datetime,
                  step: timedelta) -> list[tuple[datetime, str, int]]:
    """(bucket start, cache status, requests) in buckets of `step` starting at `since`."""
    rows = conn.execute(
        "SELECT date_bin(%(step)s, created_at, %(since)s) AS t, cache_status, count(*) FROM traces "
        f"WHERE {_WINDOW} AND cache_status = ANY(%(statuses)s) GROUP BY 1, 2 ORDER BY 1",
        {**_params(tenant_id, since, until), "step": step, "statuses": list(CACHE_STATUSES)}).fetchall()
    return [(r[0], str(r[1]), int(r[2])) for r in rows]


def guard_actions(conn: Connection, tenant_id: str, since: datetime, until: datetime) -> list[tuple[str, str, int]]:
    """(rail, action, count) over the verdicts stored in traces.guard (one per rail and stage)."""
    rows = conn.execute(
        "SELECT v->>'rail', v->>'action', count(*) FROM traces, jsonb_array_elements("
        "  CASE WHEN jsonb_typeof(guard->'verdicts') = 'array' THEN guard->'verdicts' ELSE '[]'::jsonb END) v "
        f"WHERE {_WINDOW} AND guard IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
        _params(tenant_id, since, until)).fetchall()
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows if r[0] and r[1]]


def eval_aggregates(conn: Connection, tenant_id: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT a.run_id, a.prompt_name, a.prompt_version, a.metric, a.n, a.mean, a.failures, a.window_to "
            f"FROM eval_aggregates a JOIN eval_runs r ON r.id = a.run_id AND r.{FINISHED} "
            "WHERE a.tenant_id = %(tenant)s AND a.window_to >= %(since)s AND a.window_to < %(until)s "
            "ORDER BY a.window_to, a.prompt_name, a.prompt_version, a.metric", _params(tenant_id, since, until))
        return cur.fetchall()


def eval_drift(conn: Connection, tenant_id: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The drift measured for a tenant by the sampler's finished runs whose window ended in [since, until)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT d.window_to, d.report FROM eval_drift d JOIN eval_runs r ON r.id = d.run_id "
            f"AND r.{FINISHED} WHERE d.tenant_id = %(tenant)s AND d.window_to >= %(since)s "
            "AND d.window_to < %(until)s ORDER BY d.window_to", _params(tenant_id, since, until))
        return cur.fetchall()


def _params(tenant_id: str, since: datetime, until: datetime) -> dict[str, Any]:
    return {"tenant": tenant_id, "since": since, "until": until}
