"""Admin routes' audit rows: `audited` runs a change and its audit row in one transaction bound to the
tenant acted on. The library calls inside join that transaction (stratus.db.connection.joined), so a
change that fails leaves no row and a row that cannot be written fails the change."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Annotated, Any

from fastapi import Depends, Request

from stratus.audit import Actor, Change, change
from stratus.gateway.context import context_of


def actor_of(request: Request) -> Actor:
    """The authenticated caller as an audit actor, with the request id and the source address."""
    ctx = context_of(request)
    who = ctx.principal
    if who is None:  # the route's scope dependency runs first; without it there is nobody to record
        raise RuntimeError("audited route without an authenticated caller")
    return Actor(key_id=who.key_id, tenant_id=who.tenant_id, scopes=tuple(sorted(who.scopes)),
                 request_id=ctx.request_id, source_ip=request.client.host if request.client else None)


AuditActor = Annotated[Actor, Depends(actor_of)]


def audited(conn: Any, actor: Actor, tenant_id: str, action: str, target: str) -> AbstractContextManager[Change]:
    return change(conn, tenant_id, actor, action, target)
