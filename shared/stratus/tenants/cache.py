"""Per-process memory of one small record per tenant (its guard policy, its reranker choice), read on every
request: a database round trip would be a noticeable share of the request, and a change may reach other warm
processes up to `ttl_s` later; the process that stores a change forgets its copy at once (`forget`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TenantCache(Generic[T]):
    def __init__(self, ttl_s: float, max_tenants: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_tenants = max_tenants  # bounded: a long-lived process serving many tenants
        self._entries: dict[str, tuple[float, T]] = {}

    def get(self, tenant_id: str, load: Callable[[], T], *, ttl_s: float | None = None) -> T:
        """The remembered value when younger than the TTL, else `load()`'s, remembered."""
        now = time.monotonic()
        hit = self._entries.get(tenant_id)
        if hit is not None and now - hit[0] < (self.ttl_s if ttl_s is None else ttl_s):
            return hit[1]
        value = load()
        if len(self._entries) > self.max_tenants:
            self._entries.clear()
        self._entries[tenant_id] = (now, value)
        return value

    def forget(self, tenant_id: str) -> None:
        self._entries.pop(tenant_id, None)

    def clear(self) -> None:
        self._entries.clear()
