"""GET /v1/models and /v1/models/{id}: the catalog's aliases and deployments, `rag/<alias>` assistants
and the embedding model. Listing is free: authenticated, not rate limited.

Only what this deployment can serve is listed: with ProviderEgress=none an alias whose every deployment
needs the internet (and such a deployment addressed directly) is left out, so a client choosing from the
list never picks a model that fails with 503 provider_egress_required."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from stratus.gateway import errors
from stratus.gateway.chat import RAG_PREFIX
from stratus.gateway.deps import require
from stratus.gateway.routes.embeddings import embedding_model_ids

router = APIRouter(prefix="/v1", tags=["inference"], responses=errors.responses(*errors.AUTHENTICATED, 404))
Caller = Annotated[Any, Depends(require("inference"))]
_CREATED = 1735689600  # catalog entries have no creation time; a fixed date keeps the list stable


def model_ids(settings: Any) -> list[str]:
    from stratus.llm.catalog import load_catalog

    catalog = load_catalog(settings)
    aliases = sorted(a for a in catalog.aliases if catalog.servable(a))
    deployments = sorted(d for d in set(catalog.deployments) - set(catalog.aliases) if catalog.servable(d))
    return [*aliases, *(f"{RAG_PREFIX}{a}" for a in aliases), *deployments, *embedding_model_ids(settings)]


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "stratus"}


@router.get("/models", summary="List the models")
def list_models(request: Request, who: Caller) -> dict[str, Any]:
    return {"object": "list", "data": [_model(m) for m in model_ids(request.app.state.settings)]}


@router.get("/models/{model_id:path}", summary="Describe one model")
def get_model(model_id: Annotated[str, Path(min_length=1, max_length=256)], request: Request,
              who: Caller) -> dict[str, Any]:
    if model_id not in model_ids(request.app.state.settings):
        raise errors.not_found(f"model {model_id!r} does not exist", param="model", code="model_not_found")
    return _model(model_id)
