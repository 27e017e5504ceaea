"""Per-tenant guard policy: for each rail, what a hit does (block, redact, flag or off) and the score
at which it counts as a hit.

The defaults are deliberately cautious where a rail's false positives are known: the injection rail
blocks only from its detector's block tier, a score that ordinary chat, code and documents almost never
reach, and flags the hits under it (docs/guard.md, "Blocking by default"). A tenant's stored policy holds
only what it changed; everything else follows the defaults, so a new rail or a changed default reaches
every tenant that did not opt out.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratus.errors import InvalidInput
from stratus.tenants.cache import TenantCache
from stratus.validation import describe_errors

Score = Annotated[float, Field(ge=0, le=1)]

# Which actions make sense for which rail: redaction only for PII; a context rail drops or fences a
# retrieved chunk rather than blocking the whole request.
ALLOWED: dict[str, tuple[str, ...]] = {
    "injection": ("block", "flag", "off"),
    "pii": ("redact", "block", "flag", "off"),
    "context_injection": ("drop", "fence", "flag", "off"),
    # Tool results: fenced or withheld like a chunk, or the request refused (an agent's loop can stop).
    "tool_injection": ("block", "drop", "fence", "flag", "off"),
    "canary": ("block", "flag", "off"),
    "groundedness": ("block", "flag", "off"),
    "toxicity": ("block", "flag", "off"),
}


class RailPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str
    threshold: Score | None = None  # None: the rail's own calibrated threshold
    # PII only: whether the caller's own values replace their placeholders in the answer (None: yes),
    # and which entity types count (None: REQUEST_ENTITIES).
    restore: bool | None = None
    entities: list[str] | None = None
    # Which model scores the text (DETECTORS; None: the rail's first, the fast one). context_injection:
    # "indirect" catches ~3x more instructions hidden in documents but costs ~30x the time per chunk;
    # injection: "embedding" (injection-v7) catches more held-out attacks but embeds every message;
    # "multilingual" keeps v7 for English and sends other languages to a head on multilingual vectors, run
    # by GuardMultilingualFunction (one more invocation per request; a `threshold` applies to both models;
    # docs/guard.md).
    detector: Literal["ngram", "embedding", "multilingual", "direct", "indirect"] | None = None


# The detectors a rail can use; the first is its default.
DETECTORS: dict[str, tuple[str, ...]] = {"injection": ("ngram", "embedding", "multilingual"),
                                         "context_injection": ("direct", "indirect")}

DEFAULTS: dict[str, RailPolicy] = {
    "injection": RailPolicy(action="block"),  # tiered: blocks from the block tier, flags under it (rails)
    "pii": RailPolicy(action="redact"),
    "context_injection": RailPolicy(action="fence"),
    "tool_injection": RailPolicy(action="fence"),
    "canary": RailPolicy(action="block"),
    "groundedness": RailPolicy(action="flag"),
    "toxicity": RailPolicy(action="flag"),  # block once measured on real labelled data
}


# What the request rails redact by default: every type the PII rail knows except LOCATION. Places are
# rarely personal on their own ("pricing in Germany"), and the NER model also takes unknown product
# names for places; redacting them costs answers more than it protects. A tenant can add it back.
REQUEST_ENTITIES: tuple[str, ...] = ("CREDIT_CARD", "IBAN", "EMAIL", "PHONE", "US_SSN", "IP_ADDRESS", "PERSON")


class GuardPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rails: dict[str, RailPolicy]

    def rail(self, name: str) -> RailPolicy:
        return self.rails[name]

    def enabled(self, name: str) -> bool:
        return self.rails[name].action != "off"

    def public(self) -> dict[str, Any]:
        """As the admin API shows it: every rail's action and threshold, and the PII rail's options with
        their effective values."""
        rails: dict[str, Any] = {}
        for name, rail in self.rails.items():
            shown: dict[str, Any] = {"action": rail.action, "threshold": rail.threshold}
            if name in DETECTORS:
                shown["detector"] = rail.detector or DETECTORS[name][0]
            if name == "pii":
                shown["restore"] = rail.restore is not False
                shown["entities"] = list(rail.entities) if rail.entities is not None else list(REQUEST_ENTITIES)
            rails[name] = shown
        return {"rails": rails}


def validate_overrides(overrides: Any) -> dict[str, dict[str, Any]]:
    """A tenant's changes to the defaults, checked: unknown rails, actions a rail cannot take and
    thresholds outside [0, 1] raise InvalidInput naming the field (e.g. `rails.pii.action`)."""
    if not isinstance(overrides, dict):
        raise InvalidInput("a guard policy is an object of rails", field="rails")
    checked: dict[str, dict[str, Any]] = {}
    for name, change in overrides.items():
        if name not in ALLOWED:
            raise InvalidInput(f"unknown rail {name!r}; rails: {', '.join(ALLOWED)}", field=f"rails.{name}")
        if not isinstance(change, dict):
            raise InvalidInput("a rail's policy is an object with action and/or threshold", field=f"rails.{name}")
        merged = DEFAULTS[name].model_dump() | change
        try:
            RailPolicy.model_validate(merged)
        except ValidationError as err:
            problems, field = describe_errors(err, empty="policy")
            raise InvalidInput(f"rails.{name}: {problems}", field=f"rails.{name}.{field}") from None
        if merged["action"] not in ALLOWED[name]:
            raise InvalidInput(f"rail {name!r} can {', '.join(ALLOWED[name])}; not {merged['action']!r}",
                               field=f"rails.{name}.action")
        for option in ("restore", "entities"):
            if merged.get(option) is not None and name != "pii":
                raise InvalidInput(f"{option} is an option of the pii rail only", field=f"rails.{name}.{option}")
        if merged.get("detector") is not None and merged["detector"] not in DETECTORS.get(name, ()):
            choices = ", ".join(DETECTORS.get(name, ())) or "none (the option is for the injection rails)"
            raise InvalidInput(f"rail {name!r} detectors: {choices}; not {merged['detector']!r}",
                               field=f"rails.{name}.detector")
        if merged.get("entities") is not None:
            from stratus.guard.pii_types import ENTITIES

            unknown = sorted(set(merged["entities"]) - set(ENTITIES))
            if unknown:
                raise InvalidInput(f"unknown PII entities {unknown}; known: {', '.join(ENTITIES)}",
                                   field="rails.pii.entities")
        checked[name] = {k: v for k, v in change.items()
                         if k in ("action", "threshold", "restore", "entities", "detector")}
    return checked


# A tenant's threshold on the injection rail with no action of its own flags from that threshold: the
# default `block` is tiered (rails), and blocking from a threshold the tenant chose is asked for with
# `"action": "block"`. A threshold stored while the default was `flag` keeps meaning what it meant.
THRESHOLD_ONLY_ACTION: dict[str, str] = {"injection": "flag"}


def effective(overrides: dict[str, Any] | None = None) -> GuardPolicy:
    """The defaults with a tenant's (validated) changes applied."""
    changes = validate_overrides(overrides or {})
    rails: dict[str, RailPolicy] = {}
    for name, default in DEFAULTS.items():
        change = changes.get(name, {})
        base = default.model_dump()
        if name in THRESHOLD_ONLY_ACTION and change.get("threshold") is not None and "action" not in change:
            base["action"] = THRESHOLD_ONLY_ACTION[name]
        rails[name] = RailPolicy.model_validate(base | change)
    return GuardPolicy(rails=rails)


def load_policy(conn: Any, tenant_id: str) -> GuardPolicy:
    from stratus.db import guard_policies as store
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(tenant_id, conn):
        return effective(store.get_overrides(conn, tenant_id))


# Per process (stratus.tenants.cache): a change reaches other warm processes within the TTL; the process
# that stores a change forgets its copy at once.
POLICY_TTL_S = 10.0
_cache: TenantCache[GuardPolicy] = TenantCache(POLICY_TTL_S)


def cached_policy(conn: Any, tenant_id: str, *, ttl_s: float = POLICY_TTL_S) -> GuardPolicy:
    """load_policy, remembered for `ttl_s` seconds: the gateway reads it on every chat request."""
    return _cache.get(tenant_id, lambda: load_policy(conn, tenant_id), ttl_s=ttl_s)


def set_policy(conn: Any, tenant_id: str, overrides: Any, *, replace: bool = False) -> GuardPolicy:
    """Store a tenant's changes (merged into what it had, or replacing it) and return the result."""
    from stratus.db import guard_policies as store
    from stratus.db.connection import tenant_transaction
    from stratus.db.generations import tenant_exists
    from stratus.errors import NotFound

    changes = validate_overrides(overrides)
    with tenant_transaction(tenant_id, conn):
        if not tenant_exists(conn, tenant_id):
            raise NotFound(f"no tenant {tenant_id!r}", field="tenant_id")
        current = {} if replace else store.get_overrides(conn, tenant_id)
        merged = {name: {**current.get(name, {}), **changes.get(name, {})} for name in {*current, *changes}}
        store.set_overrides(conn, tenant_id, merged)
    _cache.forget(tenant_id)
    return effective(merged)
