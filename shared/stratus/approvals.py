"""Two-key promotion of a tenant's prompt labels: a tenant may protect labels (e.g. `prod`); moving one is
requested by one admin key, with the eval gate's result attached, and done only when a different admin key
approves. Every function runs inside the caller's transaction bound to the tenant (stratus.audit.change),
so each step and its audit row commit together."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratus.errors import Forbidden, InvalidInput, NotFound

if TYPE_CHECKING:
    import psycopg

# Who decides the requests a rollout filed when that rollout ends (promotion_requests.decided_by).
ROLLOUT_ENDED = "system:rollout_ended"


def protected_labels(conn: psycopg.Connection, tenant_id: str) -> list[str]:
    row = conn.execute("SELECT protected_labels FROM approval_settings WHERE tenant_id = %s", [tenant_id]).fetchone()
    return list(row[0]) if row else []


def set_protected_labels(conn: psycopg.Connection, tenant_id: str, labels: list[str]) -> list[str]:
    chosen = sorted(set(labels))
    conn.execute("INSERT INTO approval_settings (tenant_id, protected_labels) VALUES (%s, %s)"
                 " ON CONFLICT (tenant_id) DO UPDATE SET protected_labels = EXCLUDED.protected_labels,"
                 " updated_at = now()", [tenant_id, chosen])
    return chosen


def request(conn: psycopg.Connection, tenant_id: str, *, name: str, version: int, label: str, key_id: str,
            eval_gate: dict[str, Any]) -> dict[str, Any]:
    """A pending request to point the tenant's `label` of `name` at `version`. A failed gate is refused:
    there would be nothing for the approver to approve."""
    if eval_gate.get("passed") is not True:
        raise InvalidInput("eval_gate.passed: the eval gate did not pass; a failed candidate cannot be"
                           " requested for a protected label", field="eval_gate.passed")
    published = conn.execute("SELECT 1 FROM prompt_versions WHERE name = %s AND version = %s", [name, version])
    if published.fetchone() is None:
        raise NotFound(f"prompt {name} v{version} is not published", field="version")
    return _one(conn, "INSERT INTO promotion_requests (tenant_id, name, version, label, requested_by, eval_gate)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING *",
                [tenant_id, name, version, label, key_id, _jsonb(eval_gate)])


def get(conn: psycopg.Connection, tenant_id: str, request_id: str, *, lock: bool = False) -> dict[str, Any]:
    import uuid

    try:
        canonical = str(uuid.UUID(request_id))
    except ValueError:
        canonical = None
    found = canonical and _one(conn, "SELECT * FROM promotion_requests WHERE tenant_id = %s AND id = %s"
                               + (" FOR UPDATE" if lock else ""), [tenant_id, canonical])
    if not found:
        raise NotFound(f"no promotion request {request_id!r}", field="request_id")
    return found


def list_requests(conn: psycopg.Connection, tenant_id: str, status: str | None) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM promotion_requests WHERE tenant_id = %s AND (%s::text IS NULL OR status = %s)"
                    " ORDER BY requested_at, id", [tenant_id, status, status])
        return cur.fetchall()


def decide(conn: psycopg.Connection, tenant_id: str, request_id: str, *, key_id: str, approve: bool,
           reason: str = "") -> dict[str, Any]:
    """Approve (and carry out) or reject a pending request. The requesting key may do neither: approving
    one's own request is what the two-key rule forbids, and a requester withdraws by asking another admin
    to reject."""
    _lock_rollout(conn, tenant_id, get(conn, tenant_id, request_id))  # the order rollouts lock in: no deadlock
    found = get(conn, tenant_id, request_id, lock=True)
    if found["status"] != "pending":
        raise InvalidInput(f"promotion request {request_id} is already {found['status']}", field="request_id")
    if found["requested_by"] == key_id:
        raise Forbidden("a promotion to a protected label must be approved by a different admin key than the"
                        " one that requested it", field="request_id")
    if approve:
        from stratus.prompts.registry import promote

        _require_active_rollout(conn, tenant_id, found)

        promote(conn, found["name"], found["version"], found["label"], tenant_id)
    return _one(conn, "UPDATE promotion_requests SET status = %s, decided_by = %s, decided_at = now(), reason = %s"
                " WHERE id = %s RETURNING *", ["approved" if approve else "rejected", key_id, reason or None,
                                               found["id"]])


def pending_for_rollout(conn: psycopg.Connection, tenant_id: str, rollout_id: str) -> dict[str, Any] | None:
    """The pending request a rollout's completion filed, if one is still waiting."""
    return _one(conn, "SELECT * FROM promotion_requests WHERE tenant_id = %s AND status = 'pending'"
                " AND eval_gate->>'rollout_id' = %s ORDER BY requested_at LIMIT 1", [tenant_id, rollout_id]) or None


def close_for_rollout(conn: psycopg.Connection, tenant_id: str, rollout_id: str, reason: str) -> list[dict[str, Any]]:
    """Rejects the pending requests a rollout filed, now that it has ended: approving one later would move
    the label to a candidate that was rolled back (or to where it already is). Decided by ROLLOUT_ENDED."""
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("UPDATE promotion_requests SET status = 'rejected', decided_by = %s, decided_at = now(),"
                    " reason = %s WHERE tenant_id = %s AND status = 'pending' AND eval_gate->>'rollout_id' = %s"
                    " RETURNING *", [ROLLOUT_ENDED, reason[:1000], tenant_id, rollout_id])
        return [dict(r) for r in cur.fetchall()]


def _rollout_id(request: dict[str, Any]) -> str | None:
    gate = request.get("eval_gate")
    value = gate.get("rollout_id") if isinstance(gate, dict) else None
    return str(value) if value is not None else None


def _rollout_row(conn: psycopg.Connection, tenant_id: str, rollout_id: str, *, lock: bool) -> dict[str, Any] | None:
    import uuid

    from stratus.db import rollouts as store

    try:
        canonical = str(uuid.UUID(rollout_id))
    except ValueError:
        return None
    return store.get(conn, tenant_id, canonical, lock=lock)


def _lock_rollout(conn: psycopg.Connection, tenant_id: str, request: dict[str, Any]) -> None:
    rollout_id = _rollout_id(request)
    if rollout_id is not None:
        _rollout_row(conn, tenant_id, rollout_id, lock=True)


def _require_active_rollout(conn: psycopg.Connection, tenant_id: str, request: dict[str, Any]) -> None:
    """A request filed by a rollout is approvable only while that rollout runs: once it is rolled back the
    candidate regressed (or was aborted), once completed the label is already there."""
    rollout_id = _rollout_id(request)
    if rollout_id is None:
        return
    row = _rollout_row(conn, tenant_id, rollout_id, lock=False)
    if row is None or row["state"] != "active":
        state = row["state"] if row is not None else "not found"
        raise InvalidInput(f"eval_gate.rollout_id: rollout {rollout_id} is {state}; its promotion request can"
                           " no longer be approved", field="eval_gate.rollout_id")


def _one(conn: psycopg.Connection, sql: str, params: list[Any]) -> dict[str, Any]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)  # `sql` is built from constant fragments only
        row = cur.fetchone()
    return dict(row) if row else {}


def _jsonb(value: Any) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(value)
