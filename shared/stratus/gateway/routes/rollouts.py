"""/v1/admin/tenants/{id}/prompts/{name}/rollouts (scope "admin"): progressive rollout of a prompt version
on one of the tenant's labels (docs/prompts.md#progressive-rollout). Each change is audited in its own
transaction (stratus.prompt_rollouts)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from stratus.gateway import errors
from stratus.gateway.auditing import AuditActor
from stratus.gateway.deps import Conn, require
from stratus.tenants import TENANT_ID_PATTERN

router = APIRouter(prefix="/v1/admin/tenants/{tenant_id}/prompts/{name}/rollouts", tags=["admin"],
                   dependencies=[Depends(require("admin"))],
                   responses=errors.responses(*errors.AUTHENTICATED, 404))
TenantPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]
NamePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="a prompt's name")]
RolloutPath = Annotated[str, Path(pattern=r"^[0-9a-fA-F-]{32,36}$", description="a rollout's id")]
# Stored with two decimals (numeric(5, 2)): 12.345 becomes 12.35.
Share = Annotated[float, Field(ge=0, le=100, description="percent of sticky keys")]
Metric = Literal["overall", "citations_retrieved", "refusal_consistent", "groundedness", "output_pii", "latency",
                 "cost", "judge_faithfulness", "judge_relevance"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RolloutStart(_Body):
    """Serve `version` to `share` percent of the label's traffic (sticky keys), judged online on `metric`:
    rolled back when it scores lower than the label's version by more than `margin` once each side has
    `min_samples` scored samples."""

    version: int = Field(ge=1, le=2**31 - 1)
    label: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = "production"
    share: Share
    sticky_by: Literal["conversation", "user", "key"] = "conversation"
    metric: Metric = "overall"
    margin: float = Field(default=0.05, ge=0, le=1)
    min_samples: int = Field(default=30, ge=1, le=1_000_000)


class RolloutAdvance(_Body):
    share: Share


class RolloutComplete(_Body):
    force: bool = False  # complete without enough samples (or despite a regression)
    # The gold suite's result, attached to the promotion request a protected label needs (as for promote).
    eval_gate: dict[str, Any] | None = None


@router.post("", status_code=201)
def start(tenant_id: TenantPath, name: NamePath, body: RolloutStart, conn: Conn, actor: AuditActor) -> dict[str, Any]:
    """Starts a rollout; 400 (param `label`) while the label has an active one, (`version`) when the label
    already serves that version."""
    from stratus import prompt_rollouts

    return prompt_rollouts.start(conn, actor, tenant_id, name=name, **body.model_dump())


@router.get("")
def list_rollouts(tenant_id: TenantPath, name: NamePath, conn: Conn,
                  state: Annotated[Literal["active", "completed", "rolled_back"] | None, Query()] = None
                  ) -> dict[str, Any]:
    """The prompt's rollouts for this tenant, newest first; an active one with its current figures per version."""
    from stratus import prompt_rollouts

    return {"object": "list", "data": prompt_rollouts.status(conn, tenant_id, name, state)}


@router.get("/{rollout_id}")
def get_rollout(tenant_id: TenantPath, name: NamePath, rollout_id: RolloutPath, conn: Conn) -> dict[str, Any]:
    return _find(conn, tenant_id, name, rollout_id)


@router.post("/{rollout_id}/advance")
def advance(tenant_id: TenantPath, name: NamePath, rollout_id: RolloutPath, body: RolloutAdvance, conn: Conn,
            actor: AuditActor) -> dict[str, Any]:
    """A new share for an active rollout (up or down)."""
    from stratus import prompt_rollouts

    _find(conn, tenant_id, name, rollout_id)
    return prompt_rollouts.advance(conn, actor, tenant_id, rollout_id, body.share)


@router.post("/{rollout_id}/complete", responses={
    202: {"description": "The label is protected: a promotion request awaiting another admin key"}})
def complete(tenant_id: TenantPath, name: NamePath, rollout_id: RolloutPath, body: RolloutComplete, conn: Conn,
             actor: AuditActor, response: Response) -> dict[str, Any]:
    """Moves the label to the candidate and ends the rollout; 400 (param `force`) before both versions have
    enough samples or on a regression, unless forced; 202 with a promotion request for a protected label."""
    from stratus import prompt_rollouts
    from stratus.gateway.routes.approvals import _request

    _find(conn, tenant_id, name, rollout_id)
    shown, request = prompt_rollouts.complete(conn, actor, tenant_id, rollout_id, force=body.force,
                                              eval_gate=body.eval_gate)
    if request is None:
        return shown
    response.status_code = 202
    return {**shown, "promotion_request": _request(request)}


@router.delete("/{rollout_id}")
def abort(tenant_id: TenantPath, name: NamePath, rollout_id: RolloutPath, conn: Conn, actor: AuditActor,
          reason: Annotated[str, Query(max_length=1000)] = "") -> dict[str, Any]:
    """Rolls the rollout back by hand: share 0, state rolled_back, the label's version serves everyone."""
    from stratus import prompt_rollouts

    _find(conn, tenant_id, name, rollout_id)
    return prompt_rollouts.abort(conn, actor, tenant_id, rollout_id, reason)


def _find(conn: Any, tenant_id: str, name: str, rollout_id: str) -> dict[str, Any]:
    """The tenant's rollout of this prompt (404 otherwise: another tenant's id is simply not found)."""
    from stratus.db.connection import tenant_transaction
    from stratus.errors import NotFound
    from stratus.prompts import rollout

    with tenant_transaction(tenant_id, conn):
        row = rollout.get(conn, tenant_id, rollout_id)
    if row["name"] != name:
        raise NotFound(f"prompt {name} has no rollout {rollout_id!r}", field="rollout_id")
    return rollout.public(row)
