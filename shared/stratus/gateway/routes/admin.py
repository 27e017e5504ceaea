"""/v1/admin (scope "admin"): tenants, their keys, limits and budgets, usage, traces, model overrides,
guard policies and retrieval settings (the tenant's reranker);
and /v1/traces/{request_id}, where a tenant reads its own traces (scope "inference").

An admin key belongs to a tenant too, but these routes act on the tenant named in the path: each
operation binds THAT tenant in its own transaction, so RLS still scopes every statement to one tenant.
Timestamps are Unix seconds and money is a float of US dollars, as in OpenAI's API.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from stratus.gateway import errors
from stratus.gateway.auditing import AuditActor, audited
from stratus.gateway.deps import Conn, require
from stratus.tenants import TENANT_ID_PATTERN, TenantId
from stratus.validation import INT4_MAX

router = APIRouter(responses=errors.responses(*errors.AUTHENTICATED, 404))
admin = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require("admin"))])
Inference = Annotated[Any, Depends(require("inference"))]
Scope = Literal["inference", "documents", "admin"]
# The columns are `integer` (int4) with CHECK (> 0): the schema says so, so a bigger value is a 400, not a 500.
PerMinute = Annotated[int | None, Field(default=None, ge=1, le=INT4_MAX)]
# Path parameters with the patterns the stored values have, so a fuzzer (or a client) knows what is valid.
TenantPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]
KeyPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$", description="the key's id or its prefix")]
RequestIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,128}$", description="the x-request-id")]
AliasPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$", description="a model alias")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantCreate(_Body):
    id: TenantId
    name: str = Field(default="", max_length=200)


class LimitsUpdate(_Body):
    """Only the fields sent change; null puts one back to the default (budget_usd null: no budget)."""

    requests_per_minute: PerMinute
    tokens_per_minute: PerMinute
    key_requests_per_minute: PerMinute
    key_tokens_per_minute: PerMinute
    budget_usd: float | None = Field(default=None, ge=0, lt=1e8)  # numeric(14, 6)
    budget_period: Literal["day", "month"] = "month"


class KeyCreate(_Body):
    name: str = Field(default="", max_length=200)
    scopes: list[Scope] = Field(default=["inference", "documents"], min_length=1)
    requests_per_minute: PerMinute
    tokens_per_minute: PerMinute


class ModelOverride(_Body):
    deployments: list[str] = Field(min_length=1, max_length=16)


# --- tenants -----------------------------------------------------------------------------------------
@admin.post("/tenants", status_code=201,
            responses={200: {"description": "The tenant already existed: returned unchanged"}})
def create_tenant(body: TenantCreate, conn: Conn, response: Response, actor: AuditActor) -> dict[str, Any]:
    """201 with the new tenant; 200 with the existing one, unchanged, when the id is taken."""
    from stratus.gateway import tenancy

    with audited(conn, actor, body.id, "tenant.create", body.id) as change:
        tenant = tenancy.create_tenant(conn, body.id, body.name)
        change.after, change.record = tenant, tenant["created"]
    if not tenant["created"]:
        response.status_code = 200
    return _public_dict({"object": "tenant", **tenant})


@admin.get("/tenants")
def list_tenants(conn: Conn) -> dict[str, Any]:
    from stratus.gateway import tenancy

    return {"object": "list", "data": [_public({"object": "tenant", **t}) for t in tenancy.list_tenants(conn)]}


@admin.get("/tenants/{tenant_id}")
def get_tenant(tenant_id: TenantPath, conn: Conn) -> dict[str, Any]:
    """The tenant with the limits in force for it."""
    from stratus.db import tenants as store
    from stratus.db.connection import tenant_transaction
    from stratus.gateway import tenancy

    limits = tenancy.get_limits(conn, tenant_id)  # NotFound for an unknown tenant
    with tenant_transaction(tenant_id, conn):
        tenant = store.get_tenant(conn, tenant_id)
    return _public_dict({"object": "tenant", **(tenant or {}), "limits": limits})


@admin.put("/tenants/{tenant_id}/limits")
def set_limits(tenant_id: TenantPath, body: LimitsUpdate, conn: Conn, actor: AuditActor) -> dict[str, Any]:
    from stratus.gateway import tenancy

    with audited(conn, actor, tenant_id, "limits.set", tenant_id) as change:
        change.before = tenancy.get_limits(conn, tenant_id)
        change.after = tenancy.set_limits(conn, tenant_id, **body.model_dump(exclude_unset=True))
    return _public_dict(change.after)


@admin.get("/tenants/{tenant_id}/limits")
def get_limits(tenant_id: TenantPath, conn: Conn) -> dict[str, Any]:
    from stratus.gateway import tenancy

    return _public_dict(tenancy.get_limits(conn, tenant_id))


@admin.get("/tenants/{tenant_id}/usage")
def get_usage(tenant_id: TenantPath, conn: Conn) -> dict[str, Any]:
    from stratus.gateway import tenancy

    return _public_dict(tenancy.usage(conn, tenant_id))


# --- keys --------------------------------------------------------------------------------------------
@admin.post("/tenants/{tenant_id}/keys", status_code=201)
def create_key(tenant_id: TenantPath, body: KeyCreate, conn: Conn, actor: AuditActor) -> dict[str, Any]:
    """The new key; its plaintext (`key`) is in this response only and cannot be shown again."""
    from stratus.gateway import keys

    with audited(conn, actor, tenant_id, "key.create", tenant_id) as change:
        plaintext, info = keys.create_key(conn, tenant_id, name=body.name,
                                          scopes=tuple(dict.fromkeys(body.scopes)),
                                          requests_per_minute=body.requests_per_minute,
                                          tokens_per_minute=body.tokens_per_minute)
        change.after = _key(info)  # the row as lists show it: never the key text or its hash
    return {**change.after, "key": plaintext}


@admin.get("/tenants/{tenant_id}/keys")
def list_keys(tenant_id: TenantPath, conn: Conn) -> dict[str, Any]:
    from stratus.gateway import keys

    return {"object": "list", "data": [_key(k) for k in keys.list_keys(conn, tenant_id)]}


@admin.delete("/tenants/{tenant_id}/keys/{key_id}")
def revoke_key(tenant_id: TenantPath, key_id: KeyPath, conn: Conn, actor: AuditActor) -> dict[str, Any]:
    """Revokes the key (by id or prefix); it gets 401 from its next request on."""
    from stratus.gateway import keys

    with audited(conn, actor, tenant_id, "key.revoke", key_id) as change:
        change.before = next((_key(k) for k in keys.list_keys(conn, tenant_id) if key_id in (k.id, k.prefix)), None)
        change.after = revoked = _key(keys.revoke_key(conn, tenant_id, key_id))
    return revoked


# --- traces ------------------------------------------------------------------------------------------
@admin.get("/tenants/{tenant_id}/traces")
def list_traces(tenant_id: TenantPath, conn: Conn,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    from stratus.gateway import traces

    return {"object": "list", "data": _public(traces.list_traces(conn, tenant_id, limit=limit))}


@admin.get("/tenants/{tenant_id}/traces/{request_id}")
def get_tenant_trace(tenant_id: TenantPath, request_id: RequestIdPath, conn: Conn) -> dict[str, Any]:
    return _trace(conn, tenant_id, request_id)


@router.get("/v1/traces/{request_id}", tags=["traces"])
def get_own_trace(request_id: RequestIdPath, who: Inference, conn: Conn) -> dict[str, Any]:
    """One of the caller's own requests; another tenant's request id is not found."""
    return _trace(conn, who.tenant_id, request_id)


def _trace(conn: Any, tenant_id: str, request_id: str) -> dict[str, Any]:
    from stratus.gateway import traces

    found = traces.get_trace(conn, tenant_id, request_id)
    if found is None:
        raise errors.not_found(f"no trace for request {request_id!r}", param="request_id")
    return _public_dict(found)


# --- model overrides ---------------------------------------------------------------------------------
@admin.put("/tenants/{tenant_id}/models/{alias}")
def set_model_override(tenant_id: TenantPath, alias: AliasPath, body: ModelOverride, conn: Conn,
                       actor: AuditActor) -> dict[str, Any]:
    """This tenant's own ordered deployments for `alias` (each must be in the model catalog)."""
    from stratus.gateway import overrides

    with audited(conn, actor, tenant_id, "model_override.set", alias) as change:
        change.before = {"deployments": _override(conn, tenant_id, alias)}
        change.after = overrides.set_override(conn, tenant_id, alias, body.deployments)
    return dict(change.after)


@admin.delete("/tenants/{tenant_id}/models/{alias}")
def clear_model_override(tenant_id: TenantPath, alias: AliasPath, conn: Conn, actor: AuditActor) -> dict[str, Any]:
    from stratus.gateway import overrides

    with audited(conn, actor, tenant_id, "model_override.clear", alias) as change:
        change.before = {"deployments": _override(conn, tenant_id, alias)}
        change.after = overrides.clear_override(conn, tenant_id, alias)
    return dict(change.after)


def _override(conn: Any, tenant_id: str, alias: str) -> list[str] | None:
    """The tenant's own deployments for `alias` before a change (None: it had none), for the audit row."""
    from stratus.db.generations import model_override

    return model_override(conn, tenant_id, alias)


# --- guard policy ------------------------------------------------------------------------------------
class GuardPolicyUpdate(_Body):
    """Changes per rail, e.g. {"rails": {"injection": {"action": "block", "threshold": 0.6}}}; rails not
    named keep what they had. `replace` drops earlier changes first (back to the defaults plus these)."""

    rails: dict[str, dict[str, Any]]
    replace: bool = False


@admin.get("/tenants/{tenant_id}/guard")
def get_guard_policy(tenant_id: TenantPath, conn: Conn) -> dict[str, Any]:
    from stratus.gateway import tenancy
    from stratus.guard.policy import load_policy

    tenancy.get_limits(conn, tenant_id)  # NotFound for an unknown tenant
    return {"object": "guard_policy", "tenant_id": tenant_id, **load_policy(conn, tenant_id).public()}


@admin.put("/tenants/{tenant_id}/guard")
def set_guard_policy(tenant_id: TenantPath, body: GuardPolicyUpdate, conn: Conn, actor: AuditActor) -> dict[str, Any]:
    from stratus.gateway import tenancy
    from stratus.guard.policy import load_policy, set_policy

    with audited(conn, actor, tenant_id, "guard_policy.set", tenant_id) as change:
        tenancy.get_limits(conn, tenant_id)  # NotFound for an unknown tenant, before reading its policy
        change.before = load_policy(conn, tenant_id).public()
        change.after = set_policy(conn, tenant_id, body.rails, replace=body.replace).public()
    return {"object": "guard_policy", "tenant_id": tenant_id, **change.after}


class RetrievalSettingsUpdate(_Body):
    """The tenant's reranker: "none", "bedrock", or null to follow the deployment's default; for bedrock, the
    model (null: the deployment's STRATUS_RERANK_MODEL). Both fields are set as given."""

    reranker: Literal["none", "bedrock"] | None = None
    rerank_model: Literal["amazon.rerank-v1:0", "cohere.rerank-v3-5:0"] | None = None


@admin.get("/tenants/{tenant_id}/retrieval")
def get_retrieval_settings(tenant_id: TenantPath, conn: Conn) -> dict[str, Any]:
    from stratus.retrieval.rerank import tenant_choice

    return {"object": "retrieval_settings", "tenant_id": tenant_id, **tenant_choice(conn, tenant_id)}


@admin.put("/tenants/{tenant_id}/retrieval")
def set_retrieval_settings(tenant_id: TenantPath, body: RetrievalSettingsUpdate, conn: Conn,
                           actor: AuditActor) -> dict[str, Any]:
    from stratus.retrieval.rerank import set_tenant_choice, tenant_choice

    with audited(conn, actor, tenant_id, "retrieval_settings.set", tenant_id) as change:
        change.before = tenant_choice(conn, tenant_id)
        change.after = set_tenant_choice(conn, tenant_id, body.reranker, body.rerank_model)
    return {"object": "retrieval_settings", "tenant_id": tenant_id, **change.after}


router.include_router(admin)


def _key(info: Any) -> dict[str, Any]:
    return {"object": "api_key", **_public(dict(vars(info)))}


def _public_dict(value: dict[str, Any]) -> dict[str, Any]:
    """_public for a dict (a response object): its values made public."""
    return {k: _public(v) for k, v in value.items()}


def _public(value: Any) -> Any:
    """Timestamps as Unix seconds and numeric columns as floats, all the way down."""
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return _public_dict(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_public(v) for v in value]
    return value
