"""Admission: per-minute request and token limits for the key and the tenant, then the tenant's spend
budget, decided in one database call so that concurrent Lambdas agree (with N concurrent requests
against a limit L, exactly L pass). A refused request counts nothing and reserves nothing.

Tokens are reserved at admission (prompt estimate + max_tokens) and the request's worst-case cost is
reserved against the budget; `settle` replaces both by the real figures once the answer is known, or
releases them (tokens=0, cost=0) when the request failed. A reservation that is never settled (a
crashed Lambda) expires after RESERVATION_TTL and stops counting.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from stratus.config import Settings, get_settings
from stratus.db import limits as store
from stratus.db.connection import tenant_transaction
from stratus.gateway.keys import Principal
from stratus.validation import INT4_MAX

# Longer than any request can run on the gateway (its function's timeout is 120 s; Lambda's hard cap is
# 15 min), so only abandoned reservations expire.
RESERVATION_TTL = timedelta(minutes=10)

log = logging.getLogger(__name__)


@dataclass
class Admission:
    admitted: bool
    reason: str | None  # None | "requests" | "tokens" | "budget"
    scope: str | None  # "key" | "tenant": which limit refused
    retry_after_s: float
    headers: dict[str, str] = field(default_factory=dict)  # x-ratelimit-*: the tighter of key and tenant
    reserved_tokens: int = 0
    reserved_usd: float = 0.0
    message: str = ""


def admit(conn: store.Connection, principal: Principal, *, request_id: str, estimated_tokens: int,
          max_cost_usd: float, settings: Settings | None = None, now: datetime | None = None,
          in_transaction: bool = False) -> Admission:
    """Counts the request in its rate windows and reserves its tokens and worst-case cost, or refuses it.
    In its own tenant transaction, or (`in_transaction`) in the caller's, already bound to the tenant."""
    settings = settings or get_settings()
    # Clamped to what the counters store (int4 tokens, numeric(14, 6) dollars): a huge estimate is refused
    # by the limits, never by the database.
    tokens, cost = min(INT4_MAX, max(0, int(estimated_tokens))), min(99_999_999.0, max(0.0, float(max_cost_usd)))
    with nullcontext() if in_transaction else tenant_transaction(principal.tenant_id, conn):
        f = store.admit(conn, tenant_id=principal.tenant_id, key_id=principal.key_id, request_id=request_id,
                        tokens=tokens, max_cost_usd=cost, now=now,
                        tenant_rpm=settings.tenant_requests_per_minute, tenant_tpm=settings.tenant_tokens_per_minute,
                        key_rpm=principal.requests_per_minute, key_tpm=principal.tokens_per_minute,
                        default_key_rpm=settings.key_requests_per_minute,
                        default_key_tpm=settings.key_tokens_per_minute, reservation_ttl=RESERVATION_TTL)
    reset_s = max(0.0, (f["window_end"] - (now or datetime.now(UTC))).total_seconds())
    headers = rate_limit_headers(f, reset_s)
    if f["admitted"]:
        return Admission(True, None, None, 0.0, headers, tokens, cost, "")
    if f["reason"] == "budget":
        period_end = _period_end(f["budget_period"], now or datetime.now(UTC))
        retry = (period_end - (now or datetime.now(UTC))).total_seconds()
        return Admission(False, "budget", "tenant", retry, headers, 0, 0.0, _budget_message(principal, f, cost))
    return Admission(False, f["reason"], f["scope"], reset_s, headers, 0, 0.0,
                     _rate_message(principal, f, tokens, reset_s))


def settle(conn: store.Connection, principal: Principal, *, request_id: str, tokens: int, cost_usd: float,
           now: datetime | None = None, in_transaction: bool = False) -> None:
    """The request's real tokens and cost replace its reservation; a second call for it changes nothing.
    In its own tenant transaction, or (`in_transaction`) in the caller's, already bound to the tenant."""
    with nullcontext() if in_transaction else tenant_transaction(principal.tenant_id, conn):
        found = store.settle(conn, tenant_id=principal.tenant_id, request_id=request_id,
                             tokens=min(INT4_MAX, max(0, int(tokens))), cost_usd=max(0.0, float(cost_usd)), now=now)
    if not found and (tokens or cost_usd):
        # Settled already, or it expired first (a request that outlived RESERVATION_TTL): its use goes uncounted.
        log.warning("no live reservation %s of tenant %s: %d tokens, %.6f USD not counted", request_id,
                    principal.tenant_id, tokens, cost_usd)


def rate_limit_headers(f: dict[str, Any], reset_s: float) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers, from whichever of the key's and the tenant's limits is tighter."""
    reset = f"{max(1, math.ceil(reset_s))}s"
    headers: dict[str, str] = {}
    for kind, unit in (("requests", "rpm"), ("tokens", "tpm")):
        candidates = [(f[f"{who}_{unit}"], f[f"{who}_{kind}"] or 0) for who in ("key", "tenant")
                      if f[f"{who}_{unit}"] is not None]
        limit, used = min(candidates, key=lambda c: c[0] - c[1])
        headers[f"x-ratelimit-limit-{kind}"] = str(limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, limit - used))
        headers[f"x-ratelimit-reset-{kind}"] = reset
    return headers


def _rate_message(principal: Principal, f: dict[str, Any], tokens: int, reset_s: float) -> str:
    kind, scope = f["reason"], f["scope"]
    unit = "rpm" if kind == "requests" else "tpm"
    limit, used = f[f"{scope}_{unit}"], f[f"{scope}_{kind}"] or 0
    who = f"key {principal.key_prefix}" if scope == "key" else f"tenant {principal.tenant_id}"
    if kind == "tokens" and tokens > limit:
        return (f"Request too large for {who}: it may use {tokens} tokens (prompt estimate + max_tokens) but the"
                f" limit is {limit} tokens per minute; lower max_tokens or shorten the input.")
    return (f"Rate limit reached for {kind} per minute on {who}: limit {limit}, used {used}"
            + (f", requested {tokens}" if kind == "tokens" else "") + f". Try again in {math.ceil(reset_s)}s.")


def _budget_message(principal: Principal, f: dict[str, Any], cost: float) -> str:
    return (f"Budget exhausted for tenant {principal.tenant_id}: spent ${f['spent_usd']:.4f} and reserved"
            f" ${f['reserved_usd']:.4f} of ${f['budget_usd']:.4f} this {f['budget_period']} (UTC); this request"
            f" may cost up to ${cost:.4f}. Raise the budget or wait for the next {f['budget_period']}.")


def period_start(period: str, now: datetime) -> date:
    """The first UTC day of the budget period (a day, or the month) that `now` falls in."""
    today = now.astimezone(UTC).date()
    return today if period == "day" else today.replace(day=1)


def _period_end(period: str, now: datetime) -> datetime:
    start = period_start(period, now)
    if period == "day":
        return datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(days=1)
    return datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)
