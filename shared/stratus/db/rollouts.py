"""Prompt rollouts (SQL adapter): the rollout rows, the label-and-rollout lookup the request path makes in
one statement, and the per-version score means the sampler compares. Callers hold a tenant transaction."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from stratus.db.prompts import StoredVersion

Connection = psycopg.Connection
COLUMNS = ("id", "tenant_id", "name", "label", "candidate_version", "baseline_version", "share", "sticky_by",
           "metric", "margin", "min_samples", "state", "reason", "last_check", "created_by", "created_at",
           "updated_at", "ended_at")
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM prompt_rollouts"  # noqa: S608 - constant column names


def serving(conn: Connection, tenant_id: str, name: str, label: str
            ) -> tuple[StoredVersion, dict[str, Any] | None, StoredVersion | None] | None:
    """What `label` serves the tenant (its own label over the global one), the active rollout on it and that
    rollout's candidate version, in one round trip; None when the label does not exist."""
    row = conn.execute(
        "SELECT v.name, v.version, v.content, v.content_hash, r.id, r.share, r.sticky_by,"
        " c.name, c.version, c.content, c.content_hash"
        " FROM prompt_labels l JOIN prompt_versions v ON v.name = l.name AND v.version = l.version"
        " LEFT JOIN prompt_rollouts r ON r.tenant_id = %s AND r.name = l.name AND r.label = l.label"
        " AND r.state = 'active'"
        " LEFT JOIN prompt_versions c ON c.name = r.name AND c.version = r.candidate_version"
        " WHERE l.name = %s AND l.label = %s AND (l.tenant_id IS NULL OR l.tenant_id = %s)"
        " ORDER BY l.tenant_id IS NULL LIMIT 1",
        [tenant_id, name, label, tenant_id]).fetchone()
    if row is None:
        return None
    label_version = StoredVersion(*row[:4])
    if row[4] is None:
        return label_version, None, None
    rollout = {"id": str(row[4]), "share": float(row[5]), "sticky_by": row[6]}
    return label_version, rollout, StoredVersion(*row[7:11])


def insert(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    cols = list(row)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"INSERT INTO prompt_rollouts ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
                    f" RETURNING {', '.join(COLUMNS)}", [row[c] for c in cols])
        found = cur.fetchone()
    assert found is not None
    return found


def get(conn: Connection, tenant_id: str, rollout_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_SELECT + " WHERE tenant_id = %s AND id = %s" + (" FOR UPDATE" if lock else ""),
                    [tenant_id, rollout_id])
        return cur.fetchone()


def active(conn: Connection, tenant_id: str, name: str, label: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_SELECT + " WHERE tenant_id = %s AND name = %s AND label = %s AND state = 'active'",
                    [tenant_id, name, label])
        return cur.fetchone()


def list_rollouts(conn: Connection, tenant_id: str, name: str | None = None, state: str | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
    """Newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(_SELECT + " WHERE tenant_id = %s AND (%s::text IS NULL OR name = %s)"
                    " AND (%s::text IS NULL OR state = %s) ORDER BY created_at DESC, id LIMIT %s",
                    [tenant_id, name, name, state, state, limit])
        return cur.fetchall()


def active_ids(conn: Connection, tenant_id: str) -> list[str]:
    rows = conn.execute("SELECT id FROM prompt_rollouts WHERE tenant_id = %s AND state = 'active'"
                        " ORDER BY created_at", [tenant_id]).fetchall()
    return [str(r[0]) for r in rows]


_UPDATABLE = frozenset({"share", "state", "reason", "last_check", "ended_at"})


def update(conn: Connection, tenant_id: str, rollout_id: str, **fields: Any) -> dict[str, Any]:
    """Set `fields` (names from _UPDATABLE) and updated_at; `ended_at=True` stamps now()."""
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    sets, params = ["updated_at = now()"], []
    for col, value in fields.items():
        if col == "ended_at":
            sets.append("ended_at = now()")
            continue
        sets.append(f"{col} = %s")
        params.append(Jsonb(value) if col == "last_check" else value)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"UPDATE prompt_rollouts SET {', '.join(sets)} WHERE tenant_id = %s AND id = %s"  # noqa: S608
                    f" RETURNING {', '.join(COLUMNS)}", [*params, tenant_id, rollout_id])
        found = cur.fetchone()
    assert found is not None
    return found


def set_last_check(conn: Connection, tenant_id: str, rollout_id: str, check: dict[str, Any]) -> None:
    """The sampler's latest comparison; updated_at stays the time of the last change anyone made."""
    conn.execute("UPDATE prompt_rollouts SET last_check = %s WHERE tenant_id = %s AND id = %s",
                 [Jsonb(check), tenant_id, rollout_id])


def version_scores(conn: Connection, tenant_id: str, rollout_id: str, metric: str) -> dict[int, tuple[int, float]]:
    """Per prompt version served under the rollout: (samples scored, mean score). `overall` is each
    sample's mean over its scored metrics, averaged per version; another name is that metric's mean.
    Failed scorers (NULL) count for neither. Reads the rollout's samples (by index), then their scores."""
    only = " AND sc.metric = %s" if metric != "overall" else ""
    rows = conn.execute(
        "SELECT s.prompt_version, count(*), avg(p.score) FROM eval_samples s CROSS JOIN LATERAL"
        " (SELECT avg(sc.score) AS score FROM eval_scores sc WHERE sc.tenant_id = s.tenant_id"
        f" AND sc.request_id = s.request_id AND sc.score IS NOT NULL{only}) p"
        " WHERE s.tenant_id = %s AND s.rollout_id = %s AND p.score IS NOT NULL GROUP BY s.prompt_version",
        [*([metric] if only else []), tenant_id, rollout_id]).fetchall()
    return {int(r[0]): (int(r[1]), float(r[2])) for r in rows if r[0] is not None}
