"""Online evaluation rows (SQL adapter): samples, runs, scores, aggregates. Tenant-owned tables are
read and written inside the caller's tenant transaction (RLS); eval_runs is the sampler's own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Connection = psycopg.Connection

# A finished run: it completed its window (done) or stopped at its deadline having completed each tenant it
# lists (partial). Runs still "running" (or killed) and "failed" ones may hold part of a tenant's window.
FINISHED = "status IN ('done', 'partial')"

SAMPLE_COLUMNS = ("tenant_id", "request_id", "created_at", "mode", "model_alias", "prompt_name", "prompt_version",
                  "question", "answer", "chunk_ids", "cited_chunk_ids", "latency_ms", "cost_usd", "facts", "rollout_id")


def insert_sample(conn: Connection, row: dict[str, Any]) -> None:
    """Idempotent: a request id is sampled once (a client retrying with the same id keeps the first)."""
    cols = [c for c in SAMPLE_COLUMNS if c in row]
    values = [Jsonb(row[c]) if c == "facts" else row[c] for c in cols]
    conn.execute(f"INSERT INTO eval_samples ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
                 "ON CONFLICT (tenant_id, request_id) DO NOTHING", values)


def samples_between(conn: Connection, tenant_id: str, after: datetime, until: datetime,
                    limit: int) -> tuple[list[dict[str, Any]], int]:
    """Up to `limit` samples of the window, in time order, and how many the window holds. Over the limit,
    the ones kept are chosen by a hash of the request id: spread over the whole window (not its first
    minutes), and the same ones on a rerun."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {', '.join(SAMPLE_COLUMNS)}, count(*) OVER () AS in_window FROM eval_samples "
                    "WHERE tenant_id = %s AND created_at > %s AND created_at <= %s "
                    "ORDER BY md5(request_id) LIMIT %s", (tenant_id, after, until, limit))
        rows = cur.fetchall()
    total = int(rows[0]["in_window"]) if rows else 0
    for row in rows:
        del row["in_window"]
    return sorted(rows, key=lambda r: (r["created_at"], r["request_id"])), total


def questions_between(conn: Connection, tenant_id: str, after: datetime, until: datetime,
                      limit: int) -> list[str]:
    rows = conn.execute("SELECT question FROM eval_samples WHERE tenant_id = %s AND created_at > %s "
                        "AND created_at <= %s ORDER BY created_at DESC LIMIT %s",
                        (tenant_id, after, until, limit)).fetchall()
    return [r[0] for r in rows]


def chunk_texts(conn: Connection, tenant_id: str, chunk_ids: list[int]) -> dict[int, str]:
    """The passages a sampled answer was generated from, where they still exist (a newer document
    version replaces its chunks)."""
    if not chunk_ids:
        return {}
    rows = conn.execute("SELECT id, text FROM chunks WHERE tenant_id = %s AND id = ANY(%s)",
                        (tenant_id, list(chunk_ids))).fetchall()
    return {int(r[0]): r[1] for r in rows}


# --- runs ---------------------------------------------------------------------------------------------
def last_finished_run(conn: Connection) -> dict[str, Any] | None:
    """The latest run that finished its window (done) or stopped at its deadline (partial)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT id, window_from, window_to, status, tenants_done FROM eval_runs "
                    f"WHERE {FINISHED} ORDER BY window_to DESC, id DESC LIMIT 1")
        return cur.fetchone()


def start_run(conn: Connection, window_from: datetime, window_to: datetime) -> int:
    row = conn.execute("INSERT INTO eval_runs (window_from, window_to) VALUES (%s, %s) RETURNING id",
                       (window_from, window_to)).fetchone()
    assert row is not None
    return int(row[0])


def finish_run(conn: Connection, run_id: int, status: str, summary: dict[str, Any],
               tenants_done: list[str] | None = None) -> None:
    conn.execute("UPDATE eval_runs SET status = %s, finished_at = now(), summary = %s, tenants_done = %s "
                 "WHERE id = %s", (status, Jsonb(summary), sorted(tenants_done or []), run_id))


def get_run(conn: Connection, run_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM eval_runs WHERE id = %s", (run_id,))
        return cur.fetchone()


# --- scores and aggregates ----------------------------------------------------------------------------
def _upsert(conn: Connection, table: str, columns: Sequence[str], key: Sequence[str], update: Sequence[str],
            row: dict[str, Any], *, touch: str | None = None) -> None:
    """INSERT one row of named parameters (`columns`); on a conflict over `key`, overwrite `update` and set
    `touch` (a timestamp column) to now(). The names are this module's constants, never input."""
    assignments = [f"{c} = EXCLUDED.{c}" for c in update] + ([f"{touch} = now()"] if touch else [])
    conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(f'%({c})s' for c in columns)}) "
                 f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {', '.join(assignments)}", row)


def upsert_score(conn: Connection, row: dict[str, Any]) -> None:
    """One score per (tenant, request, metric): a rerun replaces it rather than adding another."""
    _upsert(conn, "eval_scores", ("tenant_id", "request_id", "metric", "score", "passed", "scorer", "error", "details",
                                  "run_id", "prompt_name", "prompt_version"),
            ("tenant_id", "request_id", "metric"), ("score", "passed", "scorer", "error", "details", "run_id"),
            {**row, "details": Jsonb(row.get("details") or {})}, touch="scored_at")


def window_means(conn: Connection, tenant_id: str, after: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per prompt version and metric: samples scored, mean of the scores, scorer failures, over the samples
    of one window (however many runs scored them)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT coalesce(s.prompt_name, '') AS prompt_name, coalesce(s.prompt_version, 0) AS prompt_version, "
            "sc.metric, count(sc.score) AS n, avg(sc.score) AS mean, count(*) FILTER (WHERE sc.error IS NOT NULL) "
            "AS failures FROM eval_scores sc JOIN eval_samples s USING (tenant_id, request_id) "
            "WHERE sc.tenant_id = %s AND s.created_at > %s AND s.created_at <= %s "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", (tenant_id, after, until))
        return cur.fetchall()


def upsert_aggregate(conn: Connection, row: dict[str, Any]) -> None:
    key = ("run_id", "tenant_id", "prompt_name", "prompt_version", "metric")
    _upsert(conn, "eval_aggregates", (*key, "n", "mean", "failures", "window_to"), key, ("n", "mean", "failures"), row)


def baseline_mean(conn: Connection, tenant_id: str, prompt_name: str, metric: str, before: datetime,
                  runs: int) -> tuple[float | None, int]:
    """The mean of the previous `runs` windows' means for a prompt (any version) and metric, and how many
    windows that is: the trailing baseline a run is compared with. Only finished runs count (done, or
    partial: a tenant is listed there once aggregated): a run that crashed may have aggregated part of a
    window that its rerun aggregates again."""
    row = conn.execute(
        "SELECT avg(mean), count(*) FROM (SELECT a.mean FROM eval_aggregates a JOIN eval_runs r ON r.id = a.run_id "
        f"AND r.{FINISHED} WHERE a.tenant_id = %s AND a.prompt_name = %s AND a.metric = %s "
        "AND a.window_to < %s AND a.mean IS NOT NULL AND a.n > 0 ORDER BY a.window_to DESC LIMIT %s) t",
        (tenant_id, prompt_name, metric, before, runs)).fetchone()
    return (float(row[0]) if row and row[0] is not None else None), int(row[1] if row else 0)


def upsert_drift(conn: Connection, run_id: int, tenant_id: str, window_to: datetime, report: dict[str, Any]) -> None:
    conn.execute("INSERT INTO eval_drift (run_id, tenant_id, window_to, report) VALUES (%s, %s, %s, %s) "
                 "ON CONFLICT (run_id, tenant_id) DO UPDATE SET report = EXCLUDED.report",
                 (run_id, tenant_id, window_to, Jsonb(report)))
