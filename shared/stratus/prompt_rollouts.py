"""The administrative steps of a prompt rollout, each with its audit row in the same transaction: start,
advance (a new share), complete (the label moves to the candidate through the promote path, or a
two-key promotion request for a protected label), abort (rolled back by hand), and the sampler's
automatic rollback. The rollout itself is stratus.prompts.rollout; this module sits beside
stratus.approvals, which completing a protected label needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stratus import audit
from stratus.errors import Forbidden, InvalidInput
from stratus.prompts import rollout

if TYPE_CHECKING:
    import psycopg

# The eval sampler's actor: a change no key made, named so the audit trail says what made it.
SAMPLER = audit.Actor(key_id=None, tenant_id="system:eval_sampler", scopes=("system",))


def _target(row: dict[str, Any]) -> str:
    return f"{row['name']}:{row['label']}"


def start(conn: psycopg.Connection, actor: audit.Actor, tenant_id: str, **spec: Any) -> dict[str, Any]:
    """A new rollout (stratus.prompts.rollout.start's fields), audited as rollout.start."""
    by = actor.key_id or actor.tenant_id or "unknown"
    with audit.change(conn, tenant_id, actor, "rollout.start", f"{spec.get('name')}:{spec.get('label')}") as done:
        _require_tenant(conn, tenant_id)
        shown = rollout.public(rollout.start(conn, tenant_id, created_by=by, **spec))
        done.after = shown
    return shown


def advance(conn: psycopg.Connection, actor: audit.Actor, tenant_id: str, rollout_id: str,
            share: float) -> dict[str, Any]:
    with audit.change(conn, tenant_id, actor, "rollout.advance", rollout_id) as done:
        before, after = rollout.set_share(conn, tenant_id, rollout_id, share)
        done.before, done.after = _brief(before), _brief(after)
        done.record = float(before["share"]) != float(after["share"])
        shown = rollout.public(after)
    return shown


def abort(conn: psycopg.Connection, actor: audit.Actor, tenant_id: str, rollout_id: str,
          reason: str = "") -> dict[str, Any]:
    """Rolled back by hand: the share goes to 0 and the label's version serves everyone."""
    who = actor.key_id or actor.tenant_id
    why = f"aborted by {who}" + (f": {reason}" if reason else "")
    with audit.change(conn, tenant_id, actor, "rollout.abort", rollout_id) as done:
        before, after = rollout.end(conn, tenant_id, rollout_id, "rolled_back", why)
        _close_requests(conn, actor, tenant_id, after)
        done.before, done.after = _brief(before), _brief(after)
        shown = rollout.public(after)
    return shown


def complete(conn: psycopg.Connection, actor: audit.Actor, tenant_id: str, rollout_id: str, *,
             force: bool = False, eval_gate: dict[str, Any] | None = None
             ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Moves the tenant's label to the candidate and ends the rollout as completed: (the rollout, None).
    The online comparison must have enough samples on both sides and no regression, unless `force`. A
    protected label is not moved: a promotion request goes to a second admin key instead, with the
    rollout's figures as its eval gate (merged over `eval_gate`), and the rollout keeps running until the
    label reaches the candidate: (the rollout, the request). An operator (no key) cannot request one."""
    from stratus import approvals
    from stratus.prompts.registry import promote

    with audit.change(conn, tenant_id, actor, "rollout.complete", rollout_id) as done:
        row = rollout.get(conn, tenant_id, rollout_id, lock=True)
        if row["state"] != "active":
            raise InvalidInput(f"rollout {rollout_id} is already {row['state']}", field="rollout_id")
        name, label, candidate = row["name"], row["label"], int(row["candidate_version"])
        check = rollout.compare(row, _scores(conn, tenant_id, row))
        served = rollout.served_version(conn, tenant_id, name, label)
        if served == candidate:  # the label got there another way (an approved request, a global promote)
            before, after = rollout.end(conn, tenant_id, rollout_id, "completed",
                                        f"label {label!r} already serves v{candidate}", last_check=check)
            _close_requests(conn, actor, tenant_id, after)
            done.before, done.after = _brief(before), {**_brief(after), "check": check}
            return rollout.public(after), None
        if check["decision"] != "ok" and not force:
            raise InvalidInput(f"rollout {rollout_id} cannot complete yet ({check['decision']}: "
                               f"{rollout.describe(check)}); send force to complete anyway", field="force")
        if label in approvals.protected_labels(conn, tenant_id):
            if actor.key_id is None:
                raise Forbidden(f"label {label!r} is protected: completing needs a promotion request from one"
                                " admin key and approval by another (the approvals API)", field="label")
            waiting = approvals.pending_for_rollout(conn, tenant_id, str(row["id"]))
            if waiting is not None:  # asked again: the same request, not a second one for the approver
                done.record = False
                return rollout.public(row), waiting
            gate = {**(eval_gate or {}), "passed": check["decision"] == "ok", "rollout": check,
                    "rollout_id": str(row["id"])}
            request = approvals.request(conn, tenant_id, name=name, version=candidate, label=label,
                                        key_id=actor.key_id, eval_gate=gate)
            rollout.record_check(conn, tenant_id, str(row["id"]), check)
            done.action, done.before, done.after = "promotion.request", {"version": served}, audit.scrub(request)
            return rollout.public(rollout.get(conn, tenant_id, rollout_id)), request
        moved = promote(conn, name, candidate, label, tenant_id)
        before, after = rollout.end(conn, tenant_id, rollout_id, "completed",
                                    f"label {label!r} moved to v{candidate}" + (" (forced)" if force else ""),
                                    last_check=check)
        _close_requests(conn, actor, tenant_id, after)  # one a rejected earlier try left pending
        done.before = {**_brief(before), "label_version": moved.previous}
        done.after = {**_brief(after), "label_version": moved.current, "check": check}
    return rollout.public(after), None


def check_all(conn: psycopg.Connection, tenant_id: str) -> list[dict[str, Any]]:
    """The sampler's step for one tenant: each active rollout compared on its scored samples; a regression
    rolls it back (share 0, audited as rollout.rollback by the sampler), a label that already reached the
    candidate (an approved promotion) completes it. Returns what was decided, per rollout."""
    from stratus.db import rollouts as store
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(tenant_id, conn):
        ids = store.active_ids(conn, tenant_id)
    out = []
    for rollout_id in ids:
        with audit.change(conn, tenant_id, SAMPLER, "rollout.rollback", rollout_id) as done:
            row = rollout.get(conn, tenant_id, rollout_id, lock=True)
            if row["state"] != "active":  # ended since the list was read
                done.record = False
                continue
            check = rollout.compare(row, _scores(conn, tenant_id, row))
            summary = {"tenant_id": tenant_id, "rollout_id": rollout_id, "prompt": _target(row), **check}
            # The label first: once it serves the candidate (an approved promotion), rolling back would
            # only mark as regressed what everyone is being served.
            if rollout.served_version(conn, tenant_id, row["name"], row["label"]) == row["candidate_version"]:
                before, after = rollout.end(conn, tenant_id, rollout_id, "completed",
                                            f"label {row['label']!r} reached v{row['candidate_version']}",
                                            last_check=check)
                _close_requests(conn, SAMPLER, tenant_id, after)
                done.action, done.before, done.after = "rollout.complete", _brief(before), _brief(after)
                summary["action"] = "completed"
            elif check["decision"] == "regression":
                before, after = rollout.end(conn, tenant_id, rollout_id, "rolled_back",
                                            f"regression: {rollout.describe(check)}", last_check=check)
                _close_requests(conn, SAMPLER, tenant_id, after)
                done.before, done.after = _brief(before), {**_brief(after), "check": check}
                summary["action"] = "rolled_back"
            else:
                rollout.record_check(conn, tenant_id, rollout_id, check)
                done.record = False
                summary["action"] = "none"
            out.append(summary)
    return out


def status(conn: psycopg.Connection, tenant_id: str, name: str | None = None, state: str | None = None
           ) -> list[dict[str, Any]]:
    """The tenant's rollouts (of `name`), newest first, each with the current per-version figures while
    it is active."""
    from stratus.db import rollouts as store
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(tenant_id, conn):
        _require_tenant(conn, tenant_id)
        rows = store.list_rollouts(conn, tenant_id, name, state)
        shown = []
        for row in rows:
            item = rollout.public(row)
            if row["state"] == "active":
                item["check"] = rollout.compare(row, _scores(conn, tenant_id, row))
            shown.append(item)
    return shown


def _close_requests(conn: psycopg.Connection, actor: audit.Actor, tenant_id: str, ended: dict[str, Any]) -> None:
    """Rejects the promotion requests the ended rollout filed, each audited as promotion.reject (by whoever
    ended it) in the rollout's own transaction: none may move the label after it."""
    from stratus import approvals

    why = f"rollout {ended['id']} {ended['state']}: {ended['reason']}"
    for request in approvals.close_for_rollout(conn, tenant_id, str(ended["id"]), why):
        audit.record(conn, tenant_id, actor, "promotion.reject", str(request["id"]),
                     before={"status": "pending"}, after=audit.scrub(request))


def _scores(conn: psycopg.Connection, tenant_id: str, row: dict[str, Any]) -> dict[int, tuple[int, float]]:
    from stratus.db import rollouts as store

    return store.version_scores(conn, tenant_id, str(row["id"]), row["metric"])


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {"candidate_version": row["candidate_version"], "share": float(row["share"]), "state": row["state"],
            "reason": row["reason"]}


def _require_tenant(conn: psycopg.Connection, tenant_id: str) -> None:
    from stratus.db.generations import tenant_exists
    from stratus.errors import NotFound

    if not tenant_exists(conn, tenant_id):
        raise NotFound(f"no tenant {tenant_id!r}", field="tenant_id")
