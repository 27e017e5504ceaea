"""/v1/admin/tenants/{id}/reindex (scope "admin"): move a tenant to another embedding model blue/green
(stratus.reindex; docs/retrieval.md, "Changing the embedding model").

POST starts (or resumes) a re-embedding and queues its first part on the ingest queue, or rolls back, or
drops the previous model's vectors; GET reports the models and the progress. Timestamps are Unix seconds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from stratus.gateway import errors
from stratus.gateway.deps import Conn, require
from stratus.gateway.routes.admin import TenantPath

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require("admin"))],
                   responses=errors.responses(*errors.AUTHENTICATED, 404))
ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$", description="an embedding model")]


class ReindexAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["start", "rollback", "drop_previous"] = "start"
    model: ModelName | None = None  # required by "start"


@router.get("/tenants/{tenant_id}/reindex")
def get_reindex(tenant_id: TenantPath, conn: Conn, request: Request) -> dict[str, Any]:
    from stratus.reindex import job

    return {"object": "reindex", **job.status(conn, tenant_id, request.app.state.settings).as_dict()}


@router.post("/tenants/{tenant_id}/reindex", status_code=202)
def post_reindex(tenant_id: TenantPath, body: ReindexAction, conn: Conn, request: Request,
                 response: Response) -> dict[str, Any]:
    from stratus.reindex import job, queue

    settings = request.app.state.settings
    if body.action == "rollback":
        progress, dispatched = job.rollback(conn, tenant_id, settings), False
    elif body.action == "drop_previous":
        progress, dispatched = job.drop_previous(conn, tenant_id, settings), False
    elif body.model is None:
        from stratus.errors import InvalidInput

        raise InvalidInput("action start needs the model to move the tenant to", field="model")
    else:
        progress = job.start(conn, tenant_id, body.model, settings)
        # Without a queue (a bare local gateway) the operator runs it with `stratus reindex`.
        dispatched = progress.target_model is not None and queue.send(tenant_id, settings)
    if body.action != "start":
        response.status_code = 200
    return {"object": "reindex", **progress.as_dict(), "dispatched": dispatched}
