"""/v1/admin/tenants/{id}/... (scope "admin"): the tenant's protected prompt labels, promotions of its own
prompt labels, and the two-key requests that move a protected one (docs/audit.md#approvals). Each change
is audited in its own transaction."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from stratus.gateway import errors
from stratus.gateway.auditing import AuditActor, audited
from stratus.gateway.deps import Conn, require
from stratus.tenants import TENANT_ID_PATTERN

router = APIRouter(prefix="/v1/admin/tenants/{tenant_id}", tags=["admin"],
                   dependencies=[Depends(require("admin"))],
                   responses=errors.responses(*errors.AUTHENTICATED, 404))
TenantPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]
NamePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="a prompt's name")]
RequestPath = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{32,36}$", description="a promotion request's id")]
Label = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApprovalSettings(_Body):
    """Labels of this tenant's prompts that only a second admin key may move."""

    protected_labels: list[Label] = Field(max_length=32)


class EvalGate(BaseModel):
    """The eval gate's result for the candidate (the prompt's gold suite, as `stratus prompts promote` runs
    it): whether it passed, and whatever else it reported (suite, scores, problems), kept as sent."""

    model_config = ConfigDict(extra="allow")
    passed: bool


class PromoteRequest(_Body):
    version: int = Field(ge=1, le=2**31 - 1)
    label: Label
    eval_gate: EvalGate


class Decision(_Body):
    reason: str = Field(default="", max_length=1000)


@router.get("/approvals")
def get_approvals(tenant_id: TenantPath, conn: Conn) -> dict[str, Any]:
    from stratus import approvals
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(tenant_id, conn):
        _require_tenant(conn, tenant_id)
        return _settings(tenant_id, approvals.protected_labels(conn, tenant_id))


@router.put("/approvals")
def set_approvals(tenant_id: TenantPath, body: ApprovalSettings, conn: Conn, actor: AuditActor) -> dict[str, Any]:
    from stratus import approvals

    with audited(conn, actor, tenant_id, "approval_settings.set", tenant_id) as change:
        _require_tenant(conn, tenant_id)
        change.before = _settings(tenant_id, approvals.protected_labels(conn, tenant_id))
        change.after = shown = _settings(tenant_id, approvals.set_protected_labels(conn, tenant_id,
                                                                                   body.protected_labels))
    return shown


@router.post("/prompts/{name}/promote", status_code=200,
             responses={202: {"description": "The label is protected: a request awaiting another admin key"}})
def promote(tenant_id: TenantPath, name: NamePath, body: PromoteRequest, conn: Conn, actor: AuditActor,
            response: Response) -> dict[str, Any]:
    """Points the tenant's own `label` of prompt `name` at `version`; a protected label gets a pending
    request instead (202), which a different admin key approves."""
    from stratus import approvals
    from stratus.prompts.registry import current_version
    from stratus.prompts.registry import promote as move

    with audited(conn, actor, tenant_id, "prompt.promote", f"{name}:{body.label}") as change:
        _require_tenant(conn, tenant_id)
        served = current_version(conn, name, body.label, tenant_id)
        if body.label in approvals.protected_labels(conn, tenant_id):
            found = approvals.request(conn, tenant_id, name=name, version=body.version, label=body.label,
                                      key_id=str(actor.key_id), eval_gate=body.eval_gate.model_dump())
            shown = _request(found)
            change.action, change.before, change.after = "promotion.request", {"version": served}, shown
            response.status_code = 202
        else:
            moved = move(conn, name, body.version, body.label, tenant_id)
            shown = {"object": "prompt_label", "tenant_id": tenant_id, "name": name, "label": body.label,
                     "version": moved.current, "eval_gate": body.eval_gate.model_dump()}
            change.before, change.after = {"version": moved.previous}, shown
    return shown


@router.get("/promotions")
def list_promotions(tenant_id: TenantPath, conn: Conn,
                    status: Literal["pending", "approved", "rejected"] | None = None) -> dict[str, Any]:
    from stratus import approvals
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(tenant_id, conn):
        rows = approvals.list_requests(conn, tenant_id, status)
    return {"object": "list", "data": [_request(r) for r in rows]}


@router.post("/promotions/{request_id}/approve")
def approve(tenant_id: TenantPath, request_id: RequestPath, body: Decision, conn: Conn,
            actor: AuditActor) -> dict[str, Any]:
    """Carries out a pending request; 403 when the approving key is the one that requested it."""
    return _decide(conn, actor, tenant_id, request_id, body, approve=True)


@router.post("/promotions/{request_id}/reject")
def reject(tenant_id: TenantPath, request_id: RequestPath, body: Decision, conn: Conn,
           actor: AuditActor) -> dict[str, Any]:
    return _decide(conn, actor, tenant_id, request_id, body, approve=False)


def _decide(conn: Any, actor: Any, tenant_id: str, request_id: str, body: Decision, *, approve: bool) -> dict[str, Any]:
    from stratus import approvals

    action = "promotion.approve" if approve else "promotion.reject"
    with audited(conn, actor, tenant_id, action, request_id) as change:
        change.before = _request(approvals.get(conn, tenant_id, request_id))
        change.after = shown = _request(approvals.decide(conn, tenant_id, request_id, key_id=str(actor.key_id),
                                                         approve=approve, reason=body.reason))
    return shown


def _require_tenant(conn: Any, tenant_id: str) -> None:
    from stratus.db.generations import tenant_exists
    from stratus.errors import NotFound

    if not tenant_exists(conn, tenant_id):
        raise NotFound(f"no tenant {tenant_id!r}", field="tenant_id")


def _settings(tenant_id: str, labels: list[str]) -> dict[str, Any]:
    return {"object": "approval_settings", "tenant_id": tenant_id, "protected_labels": labels}


def _request(row: dict[str, Any]) -> dict[str, Any]:
    return {"object": "promotion_request", "id": str(row["id"]), "tenant_id": row["tenant_id"],
            "name": row["name"], "version": row["version"], "label": row["label"], "status": row["status"],
            "requested_by": row["requested_by"], "requested_at": int(row["requested_at"].timestamp()),
            "eval_gate": row["eval_gate"], "decided_by": row["decided_by"],
            "decided_at": int(row["decided_at"].timestamp()) if row["decided_at"] else None,
            "reason": row["reason"]}
