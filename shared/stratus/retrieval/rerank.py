"""The reranking stage: which reranker a request gets, and the registry of rerankers by name.

- `none`: the fused order, cut to k (the default: see docs/retrieval.md#reranking for why).
- `bedrock`: Amazon Bedrock's Rerank API with Amazon Rerank 1.0 or Cohere Rerank 3.5
  (stratus.retrieval.bedrock_rerank).

The choice is the tenant's (a `retrieval_settings` row, set through the admin API), else the deployment's
default (`STRATUS_RERANKER`, `STRATUS_RERANK_MODEL`); a request may only turn reranking off (`rerank: false`),
never pick a reranker its tenant did not choose (a hosted reranker costs money per query).

A reranker that fails (an outage, throttling past its retries, the stage's deadline) raises a ProviderError;
retrieve() then fails open to the fused order and says so in the response (`rerank_error`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from stratus.errors import Unsupported
from stratus.retrieval.models import Hit, Reranked
from stratus.tenants.cache import TenantCache

if TYPE_CHECKING:
    from stratus.config import Settings

RERANKERS = ("none", "bedrock")
RERANK_MODELS = ("amazon.rerank-v1:0", "cohere.rerank-v3-5:0")


class Reranker(Protocol):
    name: str

    @property
    def model(self) -> str | None:
        """The hosted model, when the reranker has one."""
        ...

    def rerank(self, query: str, hits: list[Hit], k: int, *, deadline: float) -> Reranked:
        """The best `k` of `hits` for `query`, best first, with `rerank_score` set; `deadline` is a
        time.monotonic() instant the whole stage (retries included) must finish by."""
        ...


class NoRerank:
    name = "none"
    model: str | None = None

    def rerank(self, query: str, hits: list[Hit], k: int, *, deadline: float) -> Reranked:
        return Reranked(hits=hits[:k])


@dataclass(frozen=True)
class RerankChoice:
    """What one request gets: a reranker name and, for a hosted one, its model."""

    name: str
    model: str | None = None


def choose(settings: Settings, stored: dict[str, str | None] | None, requested: bool | None) -> RerankChoice:
    """The tenant's stored choice (None fields follow the settings), unless the request turned it off."""
    stored = stored or {}
    name = stored.get("reranker") or settings.reranker
    if requested is False or name == "none":
        return RerankChoice("none")
    return RerankChoice(name, stored.get("rerank_model") or settings.rerank_model)


def _bedrock(model: str | None, settings: Settings) -> Reranker:
    from stratus.retrieval.bedrock_rerank import BedrockReranker

    return BedrockReranker.from_settings(model or settings.rerank_model, settings)


_REGISTRY: dict[str, Callable[[str | None, Settings], Reranker]] = {
    "none": lambda _model, _settings: NoRerank(),
    "bedrock": _bedrock,
}
_INSTANCES: dict[tuple[str, str | None], Reranker] = {}


def register_reranker(name: str, factory: Callable[[str | None, Settings], Reranker]) -> None:
    """Make a reranker available by name; the factory (model, settings) runs on first use."""
    _REGISTRY[name] = factory
    for key in [key for key in _INSTANCES if key[0] == name]:
        del _INSTANCES[key]


def get_reranker(choice: RerankChoice | str, settings: Settings | None = None) -> Reranker:
    from stratus.config import get_settings

    if isinstance(choice, str):
        choice = RerankChoice(choice)
    key = (choice.name, choice.model)
    if key not in _INSTANCES:
        factory = _REGISTRY.get(choice.name)
        if factory is None:
            known = ", ".join(sorted(_REGISTRY))
            raise Unsupported(f"unknown reranker {choice.name!r} (known: {known})", field="reranker")
        _INSTANCES[key] = factory(choice.model, settings or get_settings())
    return _INSTANCES[key]


def reset_rerankers() -> None:
    """Forget built rerankers and remembered tenant choices (tests that change the settings)."""
    _INSTANCES.clear()
    _stored.clear()


# Per process (stratus.tenants.cache, as guard policies): retrieval reads it on every query, and a round trip
# to the database is a noticeable share of a 20 ms retrieval.
CHOICE_TTL_S = 10.0
_stored: TenantCache[dict[str, str | None]] = TenantCache(CHOICE_TTL_S)


def stored_choice(conn: Any, tenant_id: str, *, ttl_s: float = CHOICE_TTL_S) -> dict[str, str | None]:
    """The tenant's stored reranker choice, read in the caller's tenant transaction, remembered `ttl_s`."""
    from stratus.db import retrieval_settings as store

    return _stored.get(tenant_id, lambda: store.get(conn, tenant_id), ttl_s=ttl_s)


# --- a tenant's choice (the admin API) -------------------------------------------------------------------------

def tenant_choice(conn: Any, tenant_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """What the tenant stored (None: follows the deployment) and what its requests get."""
    from stratus.config import get_settings
    from stratus.db import retrieval_settings as store
    from stratus.db.connection import tenant_transaction
    from stratus.db.generations import tenant_exists
    from stratus.errors import NotFound

    settings = settings or get_settings()
    with tenant_transaction(tenant_id, conn):
        if not tenant_exists(conn, tenant_id):
            raise NotFound(f"no tenant {tenant_id!r}", field="tenant_id")
        stored = store.get(conn, tenant_id)
    effective = choose(settings, stored, None)
    return {"reranker": stored.get("reranker"), "rerank_model": stored.get("rerank_model"),
            "effective": {"reranker": effective.name, "rerank_model": effective.model}}


def set_tenant_choice(conn: Any, tenant_id: str, reranker: str | None, rerank_model: str | None,
                      settings: Settings | None = None) -> dict[str, Any]:
    """Store a tenant's reranker (None: follow the deployment's default) and model (None: the default model)."""
    from stratus.db import retrieval_settings as store
    from stratus.db.connection import tenant_transaction
    from stratus.db.generations import tenant_exists
    from stratus.errors import InvalidInput, NotFound

    if reranker is not None and reranker not in RERANKERS:
        raise InvalidInput(f"reranker must be one of {', '.join(RERANKERS)} (or null)", field="reranker")
    if rerank_model is not None and rerank_model not in RERANK_MODELS:
        raise InvalidInput(f"rerank_model must be one of {', '.join(RERANK_MODELS)} (or null)", field="rerank_model")
    with tenant_transaction(tenant_id, conn):
        if not tenant_exists(conn, tenant_id):
            raise NotFound(f"no tenant {tenant_id!r}", field="tenant_id")
        store.put(conn, tenant_id, {"reranker": reranker, "rerank_model": rerank_model})
    _stored.forget(tenant_id)
    return tenant_choice(conn, tenant_id, settings)
