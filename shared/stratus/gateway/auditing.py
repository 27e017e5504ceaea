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
                 request_id=ctx.request_id, source_ip=source_address(request))


def source_address(request: Request) -> str | None:
    """The client's address. On Lambda the TCP peer is the Web Adapter (loopback): the address is the
    `sourceIp` of the event's request context, which the adapter forwards in `x-amzn-request-context`
    (replacing any copy the client sent); HTTP APIs and function URLs put it under `http`, REST APIs under
    `identity`. Elsewhere (local mode, tests) it is the peer, and that header is not trusted."""
    import json
    import os

    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        try:
            context = json.loads(request.headers.get("x-amzn-request-context") or "{}")
        except ValueError:
            context = {}
        if isinstance(context, dict):
            for part in ("http", "identity"):
                found = context.get(part)
                ip = found.get("sourceIp") if isinstance(found, dict) else None
                if isinstance(ip, str) and ip:
                    return ip[:64]
    return request.client.host if request.client else None


AuditActor = Annotated[Actor, Depends(actor_of)]


def audited(conn: Any, actor: Actor, tenant_id: str, action: str, target: str) -> AbstractContextManager[Change]:
    return change(conn, tenant_id, actor, action, target)
