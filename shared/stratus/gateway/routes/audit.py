"""/v1/admin/audit (scope "admin"): the audit trail of the caller's own tenant, oldest first, filtered and
paged by cursor (`after`: the last row's `seq` of the previous page). Another tenant's trail is not served
here even to an admin key: an operator reads every chain with `stratus audit list` (docs/audit.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from stratus.gateway import errors
from stratus.gateway.deps import Conn, require
from stratus.tenants import TENANT_ID_PATTERN
from stratus.validation import INT4_MAX

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=errors.responses(*errors.AUTHENTICATED))
Admin = Annotated[Any, Depends(require("admin"))]
Epoch = Annotated[int | None, Query(ge=0, le=253402300799, description="Unix seconds")]


@router.get("/audit")
def list_audit(who: Admin, conn: Conn,
               tenant: Annotated[str | None, Query(pattern=TENANT_ID_PATTERN)] = None,
               action: Annotated[str | None, Query(pattern=r"^[a-z_]+\.[a-z_]+$")] = None,
               actor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9-]{1,64}$", description="a key id")] = None,
               since: Epoch = None, until: Epoch = None,
               after: Annotated[int, Query(ge=0, le=2**62, description="cursor: the previous page's last seq")] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    from stratus import audit
    from stratus.db.connection import tenant_transaction
    from stratus.errors import Forbidden

    if tenant is not None and tenant != who.tenant_id:
        raise Forbidden("an admin key reads its own tenant's audit trail only; an operator reads others"
                        " with `stratus audit list`", field="tenant")
    filters = audit.Filters(action=action, actor=actor, since=_time(since), until=_time(until),
                            after_seq=after, limit=min(limit, INT4_MAX) + 1)
    with tenant_transaction(who.tenant_id, conn):
        rows = audit.list_rows(conn, who.tenant_id, filters)
    page, more = rows[:limit], len(rows) > limit
    return {"object": "list", "data": [audit.public(r) for r in page], "has_more": more,
            "next_cursor": page[-1]["seq"] if more else None}


def _time(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)
