"""Which embedding model a tenant's questions use, and which models its new chunks must be stored in.

Queries read the model through a per-process TenantCache: another warm process may keep embedding with
the previous model for up to QUERY_MODEL_TTL_S after a switch, which is safe because the previous model's
vectors stay complete (ingestion keeps writing them) until `drop_previous`, which waits out that TTL."""

from __future__ import annotations

import psycopg

from stratus.config import Settings
from stratus.db import embedding_state
from stratus.db.connection import bound_in_transaction, tenant_transaction
from stratus.db.embedding_state import EmbeddingState
from stratus.tenants.cache import TenantCache

QUERY_MODEL_TTL_S = 10.0
_query_models: TenantCache[str | None] = TenantCache(QUERY_MODEL_TTL_S)


def query_model(tenant_id: str, settings: Settings, conn: psycopg.Connection | None = None) -> str:
    """The model the tenant's questions are embedded with (its stored choice, else the deployment's).
    `conn` may be inside the caller's tenant transaction; on a cache hit no statement runs."""
    def load() -> str | None:
        if conn is not None and bound_in_transaction(conn) == tenant_id:  # the caller's open transaction
            state = embedding_state.get(conn, tenant_id)
        else:
            with tenant_transaction(tenant_id, conn) as tx:
                state = embedding_state.get(tx, tenant_id)
        return state.query_model if state else None

    return _query_models.get(tenant_id, load) or settings.embedding_model


def forget(tenant_id: str) -> None:
    """Called by the process that switches a tenant, so that its own next query sees the switch at once."""
    _query_models.forget(tenant_id)


def stored_in_chunk_rows(model: str, settings: Settings) -> bool:
    """The deployment's model has its vectors on the chunk rows; every other model in chunk_embeddings."""
    return model == settings.embedding_model


def extra_models(conn: psycopg.Connection, tenant_id: str, settings: Settings) -> list[str]:
    """The models besides the deployment's that a chunk stored now must also get a vector of: the query
    model, a running re-embedding's target, and the previous model until it is dropped. Locks the tenant's
    state row (FOR SHARE) until the caller's transaction ends, so that a re-embedding cannot start or switch
    between this read and the chunks' commit."""
    embedding_state.ensure(conn, tenant_id)
    return extra_of(embedding_state.get(conn, tenant_id, lock="share"), settings)


def extra_of(state: EmbeddingState | None, settings: Settings) -> list[str]:
    if state is None:
        return []
    models = (state.query_model, state.target_model, state.previous_model)
    return sorted({m for m in models if m and m != settings.embedding_model})
