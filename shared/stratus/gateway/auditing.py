"""Admin routes' audit rows: `audited` runs a change and its audit row in one transaction bound to the
tenant acted on. The library calls inside join that transaction (stratus.db.connection.joined), so a
change that fails leaves no row and a row that cannot be written fails the change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from stratus.audit import Actor
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


@dataclass
class Change:
    """What the route fills in while it makes the change; `record=False` when nothing changed."""

    before: Any = None
    after: Any = None
    record: bool = True


@contextmanager
def audited(conn: Any, actor: Actor, tenant_id: str, action: str, target: str) -> Iterator[Change]:
    from stratus import audit
    from stratus.db.connection import joined, tenant_transaction

    change = Change()
    with tenant_transaction(tenant_id, conn), joined(conn, tenant_id):
        yield change
        if change.record:
            audit.record(conn, tenant_id, actor, action, target, before=change.before, after=change.after)
