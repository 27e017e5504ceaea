"""Two-key promotion of a tenant's prompt labels: a tenant may protect labels (e.g. `prod`); moving one is
requested by one admin key, with the eval gate's result attached, and done only when a different admin key
approves. Every function runs inside the caller's transaction bound to the tenant (stratus.audit.change),
so each step and its audit row commit together."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratus.errors import Forbidden, InvalidInput, NotFound

if TYPE_CHECKING:
    import psycopg


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
    found = get(conn, tenant_id, request_id, lock=True)
    if found["status"] != "pending":
        raise InvalidInput(f"promotion request {request_id} is already {found['status']}", field="request_id")
    if found["requested_by"] == key_id:
        raise Forbidden("a promotion to a protected label must be approved by a different admin key than the"
                        " one that requested it", field="request_id")
    if approve:
        from stratus.prompts.registry import promote

        promote(conn, found["name"], found["version"], found["label"], tenant_id)
    return _one(conn, "UPDATE promotion_requests SET status = %s, decided_by = %s, decided_at = now(), reason = %s"
                " WHERE id = %s RETURNING *", ["approved" if approve else "rejected", key_id, reason or None,
                                               found["id"]])


def _one(conn: psycopg.Connection, sql: str, params: list[Any]) -> dict[str, Any]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)  # `sql` is built from constant fragments only
        row = cur.fetchone()
    return dict(row) if row else {}


def _jsonb(value: Any) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(value)
