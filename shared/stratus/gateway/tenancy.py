"""Tenant administration: create and list tenants, their limits and budget, and their current usage.

Called by admin-scoped routes and the CLI. Each operation binds the tenant it concerns (RLS), so an
admin acts on another tenant exactly as that tenant's own requests would; only the tenant list reads
across tenants (through a SECURITY DEFINER function).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from stratus.config import Settings, get_settings
from stratus.db import tenants as store
from stratus.db.connection import tenant_transaction
from stratus.errors import InvalidInput, NotFound
from stratus.gateway import admission
from stratus.tenants import check_tenant_id
from stratus.validation import INT4_MAX

_RATE_LIMITS = ("requests_per_minute", "tokens_per_minute", "key_requests_per_minute", "key_tokens_per_minute")
PERIODS = ("day", "month")


def create_tenant(conn: store.Connection, tenant_id: str, name: str = "", *, exist_ok: bool = True) -> dict[str, Any]:
    """Creates the tenant, or returns it unchanged if it exists (`created` says which; with
    exist_ok=False an existing tenant is refused instead)."""
    check_tenant_id(tenant_id)
    if len(name) > 200:
        raise InvalidInput("name must be at most 200 characters", field="name")
    with tenant_transaction(tenant_id, conn):
        row, created = store.insert_tenant(conn, tenant_id, name)
        if not created and not exist_ok:
            raise InvalidInput(f"tenant {tenant_id!r} already exists", field="tenant_id")
    return {**row, "created": created}


def list_tenants(conn: store.Connection) -> list[dict[str, Any]]:
    with conn.transaction():
        return store.list_tenants(conn)


def get_limits(conn: store.Connection, tenant_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """The limits in force for the tenant: its own where set (listed in `custom`), else the defaults."""
    settings = settings or get_settings()
    with tenant_transaction(check_tenant_id(tenant_id), conn):
        _require_tenant(conn, tenant_id)
        own = store.get_limits(conn, tenant_id) or {}
    defaults: dict[str, Any] = {
        "requests_per_minute": settings.tenant_requests_per_minute,
        "tokens_per_minute": settings.tenant_tokens_per_minute,
        "key_requests_per_minute": settings.key_requests_per_minute,
        "key_tokens_per_minute": settings.key_tokens_per_minute,
        "budget_usd": None, "budget_period": "month"}
    custom = sorted(k for k, v in own.items() if v is not None and k != "budget_period")
    limits = {k: own[k] if own.get(k) is not None else v for k, v in defaults.items()}
    if limits["budget_usd"] is not None:
        limits["budget_usd"] = float(limits["budget_usd"])
    return {"tenant_id": tenant_id, **limits, "custom": custom}


def set_limits(conn: store.Connection, tenant_id: str, **limits: Any) -> dict[str, Any]:
    """Sets the given limits; None puts a rate limit back to its default, or removes the budget."""
    values = {name: _check_limit(name, value) for name, value in limits.items()}
    with tenant_transaction(check_tenant_id(tenant_id), conn):
        _require_tenant(conn, tenant_id)
        store.upsert_limits(conn, tenant_id, values)
    return get_limits(conn, tenant_id)


def usage(conn: store.Connection, tenant_id: str, *, now: datetime | None = None,
          settings: Settings | None = None) -> dict[str, Any]:
    """This minute's counted requests and tokens, and this budget period's spend and reservations."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    limits = get_limits(conn, tenant_id, settings)
    window = now.replace(second=0, microsecond=0)
    period_start = admission.period_start(limits["budget_period"], now)
    with tenant_transaction(tenant_id, conn):
        requests, tokens = store.window_counts(conn, tenant_id, "tenant", window)
        spent, settled_requests, settled_tokens = store.spend_since(conn, tenant_id, period_start)
        reserved, in_flight = store.live_reservations(conn, tenant_id, now)
    budget = limits["budget_usd"]
    return {
        "tenant_id": tenant_id,
        "window": {"start": window.isoformat(), "end": (window + timedelta(minutes=1)).isoformat(),
                   "requests": requests, "requests_limit": limits["requests_per_minute"],
                   "tokens": tokens, "tokens_limit": limits["tokens_per_minute"]},
        "period": limits["budget_period"], "period_start": period_start.isoformat(),
        "spent_usd": round(spent, 6), "reserved_usd": round(reserved, 6), "in_flight": in_flight,
        "requests": settled_requests, "tokens": settled_tokens,
        "budget_usd": budget,
        "remaining_usd": None if budget is None else round(max(0.0, budget - spent - reserved), 6),
    }


def _require_tenant(conn: store.Connection, tenant_id: str) -> None:
    if store.get_tenant(conn, tenant_id) is None:
        raise NotFound(f"no tenant {tenant_id!r}", field="tenant_id")


def _check_limit(name: str, value: Any) -> Any:
    if name in _RATE_LIMITS:
        # The columns are int4: a bigger value would fail in PostgreSQL (a 500) instead of here.
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT4_MAX):
            raise InvalidInput(f"{name} must be a positive integer up to {INT4_MAX}, or null for the default;"
                               f" got {value!r}",
                               field=name)
        return value
    if name == "budget_usd":
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0
                                  or value != value or round(float(value), 6) >= 1e8):  # numeric(14, 6)
            raise InvalidInput(f"budget_usd must be a non-negative amount in USD, or null for no budget; got"
                               f" {value!r}", field=name)
        return None if value is None else round(float(value), 6)
    if name == "budget_period":
        if value not in PERIODS:
            raise InvalidInput(f"budget_period must be one of {', '.join(PERIODS)}; got {value!r}", field=name)
        return value
    raise InvalidInput(f"unknown limit {name!r}; known: {', '.join((*_RATE_LIMITS, 'budget_usd', 'budget_period'))}",
                       field=name)
