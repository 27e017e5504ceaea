"""Per-tenant guard policy: for each rail, what a hit does (block, redact, flag or off) and the score
at which it counts as a hit.

The defaults are deliberately cautious where a rail's false positives are known: the injection rail
flags rather than blocks until its false-positive rate on ordinary traffic is good enough (see
docs/guard.md). A tenant's stored policy holds only what it changed; everything else follows the
defaults, so a new rail or a changed default reaches every tenant that did not opt out.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratus.errors import InvalidInput
from stratus.validation import describe_errors

Score = Annotated[float, Field(ge=0, le=1)]

# Which actions make sense for which rail: redaction only for PII; a context rail drops or fences a
# retrieved chunk rather than blocking the whole request.
ALLOWED: dict[str, tuple[str, ...]] = {
    "injection": ("block", "flag", "off"),
    "pii": ("redact", "block", "flag", "off"),
    "context_injection": ("drop", "fence", "flag", "off"),
    "canary": ("block", "flag", "off"),
    "groundedness": ("block", "flag", "off"),
}


class RailPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str
    threshold: Score | None = None  # None: the rail's own calibrated threshold


DEFAULTS: dict[str, RailPolicy] = {
    "injection": RailPolicy(action="flag"),  # block once ordinary chat is no longer flagged
    "pii": RailPolicy(action="redact"),
    "context_injection": RailPolicy(action="fence"),
    "canary": RailPolicy(action="block"),
    "groundedness": RailPolicy(action="flag"),
}


class GuardPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rails: dict[str, RailPolicy]

    def rail(self, name: str) -> RailPolicy:
        return self.rails[name]

    def enabled(self, name: str) -> bool:
        return self.rails[name].action != "off"


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
        checked[name] = {k: v for k, v in change.items() if k in ("action", "threshold")}
    return checked


def effective(overrides: dict[str, Any] | None = None) -> GuardPolicy:
    """The defaults with a tenant's (validated) changes applied."""
    changes = validate_overrides(overrides or {})
    return GuardPolicy(rails={name: RailPolicy.model_validate(DEFAULTS[name].model_dump() | changes.get(name, {}))
                              for name in DEFAULTS})


def load_policy(conn: Any, tenant_id: str) -> GuardPolicy:
    from stratus.db import guard_policies as store
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(tenant_id, conn):
        return effective(store.get_overrides(conn, tenant_id))


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
        return effective(merged)
