"""A tenant's own model routing: an ordered list of catalog deployments that replaces an alias's list
for that tenant only (e.g. a customer whose contract requires one provider). Validated against the
catalog when set, so a bad name is refused here rather than failing that tenant's requests later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stratus.db import generations
from stratus.db.connection import tenant_transaction
from stratus.errors import InvalidInput, NotFound


def _check_alias(alias: str) -> Any:
    from stratus.llm.catalog import load_catalog

    catalog = load_catalog()
    if alias not in catalog.aliases:
        raise NotFound(f"unknown model alias {alias!r}; known aliases: {', '.join(sorted(catalog.aliases))}",
                       field="model")
    return catalog


def _check_tenant(conn: Any, tenant_id: str) -> None:
    if not generations.tenant_exists(conn, tenant_id):
        raise NotFound(f"no tenant {tenant_id!r}", field="tenant_id")


def set_override(conn: Any, tenant_id: str, alias: str, deployments: Sequence[str]) -> dict[str, Any]:
    catalog = _check_alias(alias)
    unknown = [d for d in deployments if d not in catalog.deployments]
    if unknown:
        raise InvalidInput(f"deployments: not in the model catalog: {', '.join(unknown)}"
                           f" (known: {', '.join(sorted(catalog.deployments))})", field="deployments")
    if len(set(deployments)) != len(deployments):
        raise InvalidInput("deployments: a deployment is listed twice", field="deployments")
    listed = [catalog.deployments[d] for d in deployments]
    if listed and not any(catalog.reachable(d) for d in listed):  # ProviderEgress=none: it could never answer
        raise InvalidInput(f"deployments: {catalog.egress_error(alias, listed, override=True).message}",
                           field="deployments")
    with tenant_transaction(tenant_id, conn):
        _check_tenant(conn, tenant_id)
        generations.set_model_override(conn, tenant_id, alias, list(deployments))
    return {"object": "model_override", "tenant_id": tenant_id, "alias": alias,
            "deployments": list(deployments), "override": True}


def clear_override(conn: Any, tenant_id: str, alias: str) -> dict[str, Any]:
    """Back to the catalog's list for `alias` (clearing an absent override is not an error)."""
    catalog = _check_alias(alias)
    with tenant_transaction(tenant_id, conn):
        _check_tenant(conn, tenant_id)
        generations.clear_model_override(conn, tenant_id, alias)
    return {"object": "model_override", "tenant_id": tenant_id, "alias": alias,
            "deployments": list(catalog.aliases[alias]), "override": False}
