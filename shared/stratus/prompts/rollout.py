"""Progressive rollout of a prompt version: a tenant's label serves a candidate version to a share of its
traffic, sticky per conversation, user or API key, until it is completed (the label moves to the
candidate) or rolled back (the share goes to 0), by hand or by the online sampler on a regression.

Assignment is a pure function: a key is on the candidate side when sha256(rollout id, key) falls below
the share, so every process (and every warm Lambda) agrees without coordination, raising the share only
adds keys to the candidate side, and two rollouts split independently. The key is the most specific one
the request carries, from the rollout's `sticky_by` down: conversation, then user, then API key. A
request with none of them takes no part (the label's own version).

Every function here runs inside the caller's transaction bound to the tenant (the audited steps are
stratus.prompt_rollouts); the request path reads the label and its active rollout in one statement.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from stratus.db import rollouts as store
from stratus.errors import InvalidInput, NotFound
from stratus.prompts.models import PromptVersion
from stratus.prompts.registry import _check_label, _check_name, _from_store, _unit, resolve_prompt
from stratus.workflow_state import StickyKeys

STICKY: tuple[str, ...] = ("conversation", "user", "key")  # most specific first
# What a rollout may be judged on: the mean of every online check and judge criterion of a sample
# (`overall`), or one of them (stratus.evals.checks, stratus.evals.judge).
METRICS = ("overall", "citations_retrieved", "refusal_consistent", "groundedness", "output_pii", "latency",
           "cost", "judge_faithfulness", "judge_relevance")
_SCALE = float(1 << 64)
Decision = Literal["insufficient", "ok", "regression"]


@dataclass(frozen=True)
class Served:
    """The version a request is served, and the rollout that chose it (None: the label's own version,
    outside any rollout)."""

    prompt: PromptVersion
    rollout_id: str | None = None


def bucket(rollout_id: str, key: str) -> float:
    """Where a sticky key falls for a rollout, uniform in [0, 1) and stable forever (SHA-256, not hash())."""
    digest = hashlib.sha256(f"{rollout_id}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def sticky_key(sticky_by: str, keys: StickyKeys) -> str | None:
    """The key a rollout splits on: the first of `sticky_by` and the coarser ones that the request has."""
    for kind in STICKY[STICKY.index(sticky_by):]:
        value = getattr(keys, kind)
        if value:
            return f"{kind}:{value}"
    return None


def on_candidate(rollout_id: str, share_percent: float, key: str | None) -> bool:
    return key is not None and bucket(rollout_id, key) < share_percent / 100.0


def serve_prompt(conn: store.Connection, tenant_id: str, name: str, *, label: str, version: int | None = None,
                 sticky: StickyKeys | None = None) -> Served:
    """resolve_prompt, with the label's active rollout applied to a request that carries sticky keys: the
    candidate for keys that fall within the share, else the label's version. An explicit version, or no
    keys at all, is served as resolve_prompt serves it."""
    if version is not None or sticky is None:
        return Served(resolve_prompt(conn, tenant_id, name, label=label, version=version))
    _check_name(name)
    _check_label(label)
    with _unit(conn, tenant_id, read_only=True):
        found = store.serving(conn, tenant_id, name, label)
    if found is None:
        raise NotFound(f"prompt {name!r} has no label {label!r}", field="label")
    label_version, rollout, candidate = found
    if rollout is None or candidate is None:
        return Served(_from_store(label_version))
    key = sticky_key(rollout["sticky_by"], sticky)
    if key is None:
        return Served(_from_store(label_version))
    chosen = candidate if on_candidate(rollout["id"], rollout["share"], key) else label_version
    return Served(_from_store(chosen), rollout["id"])


def served_version(conn: store.Connection, tenant_id: str, name: str, label: str) -> int | None:
    """The version the label serves the tenant outside any rollout (its own label, else the global one)."""
    found = store.serving(conn, tenant_id, name, label)
    return found[0].version if found else None


# --- the rollout's lifecycle (in the caller's tenant transaction) --------------------------------------------


def start(conn: store.Connection, tenant_id: str, *, name: str, version: int, label: str, share: float,
          created_by: str, sticky_by: str = "conversation", metric: str = "overall", margin: float = 0.05,
          min_samples: int = 30) -> dict[str, Any]:
    """A new active rollout of `version` on the tenant's `label` of `name`. 400 when the label already
    serves that version or already has an active rollout; 404 for an unpublished version or unknown label."""
    import psycopg

    from stratus.db import prompts as prompt_store

    _check_name(name)
    _check_label(label)
    if sticky_by not in STICKY:
        raise InvalidInput(f"sticky_by must be one of {', '.join(STICKY)}", field="sticky_by")
    if metric not in METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(METRICS)}", field="metric")
    if prompt_store.get_version(conn, name, version) is None:
        raise NotFound(f"prompt {name} v{version} is not published", field="version")
    found = store.serving(conn, tenant_id, name, label)
    if found is None:
        raise NotFound(f"prompt {name!r} has no label {label!r} to roll out on", field="label")
    baseline, running, _ = found
    if running is not None:
        raise InvalidInput(f"prompt {name} label {label!r} already has an active rollout ({running['id']}):"
                           " complete or abort it first", field="label")
    if baseline.version == version:
        raise InvalidInput(f"label {label!r} of prompt {name} already serves v{version}", field="version")
    try:
        with conn.transaction():  # a savepoint: a concurrent start loses on the unique index, cleanly
            return store.insert(conn, {
                "tenant_id": tenant_id, "name": name, "label": label, "candidate_version": version,
                "baseline_version": baseline.version, "share": share, "sticky_by": sticky_by, "metric": metric,
                "margin": margin, "min_samples": min_samples, "created_by": created_by})
    except psycopg.errors.UniqueViolation:
        raise InvalidInput(f"prompt {name} label {label!r} already has an active rollout", field="label") from None


def get(conn: store.Connection, tenant_id: str, rollout_id: str, *, lock: bool = False) -> dict[str, Any]:
    import uuid

    try:
        canonical = str(uuid.UUID(rollout_id))
    except ValueError:
        canonical = None
    found = store.get(conn, tenant_id, canonical, lock=lock) if canonical else None
    if found is None:
        raise NotFound(f"no rollout {rollout_id!r}", field="rollout_id")
    return found


def _active(conn: store.Connection, tenant_id: str, rollout_id: str) -> dict[str, Any]:
    found = get(conn, tenant_id, rollout_id, lock=True)
    if found["state"] != "active":
        raise InvalidInput(f"rollout {rollout_id} is already {found['state']}", field="rollout_id")
    return found


def set_share(conn: store.Connection, tenant_id: str, rollout_id: str, share: float
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(before, after): the active rollout's share moved to `share` percent."""
    before = _active(conn, tenant_id, rollout_id)
    return before, store.update(conn, tenant_id, before["id"], share=share)


def end(conn: store.Connection, tenant_id: str, rollout_id: str, state: Literal["completed", "rolled_back"],
        reason: str, *, last_check: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(before, after): the active rollout ended. Rolled back, its share is 0 (the candidate serves no one)."""
    before = _active(conn, tenant_id, rollout_id)
    fields: dict[str, Any] = {"state": state, "reason": reason[:1000], "ended_at": True}
    if state == "rolled_back":
        fields["share"] = 0
    if last_check is not None:
        fields["last_check"] = last_check
    return before, store.update(conn, tenant_id, before["id"], **fields)


def record_check(conn: store.Connection, tenant_id: str, rollout_id: str, check: dict[str, Any]) -> None:
    store.set_last_check(conn, tenant_id, rollout_id, check)


# --- judging it ----------------------------------------------------------------------------------------------


def compare(rollout: dict[str, Any], by_version: dict[int, tuple[int, float]]) -> dict[str, Any]:
    """The candidate against the rest of the rollout's traffic (the label's version(s), pooled), on the
    rollout's metric: `regression` when both sides have min_samples and the candidate's mean is lower by
    more than the margin; `ok` when both have enough and it is not; else `insufficient`."""
    candidate_version = int(rollout["candidate_version"])
    cand_n, cand_mean = by_version.get(candidate_version, (0, 0.0))
    others = [(n, mean) for v, (n, mean) in by_version.items() if v != candidate_version]
    base_n = sum(n for n, _ in others)
    base_mean = sum(n * mean for n, mean in others) / base_n if base_n else 0.0
    need, margin = int(rollout["min_samples"]), float(rollout["margin"])
    decision: Decision = "insufficient"
    if cand_n >= need and base_n >= need:
        decision = "regression" if base_mean - cand_mean > margin else "ok"
    return {"metric": rollout["metric"], "margin": margin, "min_samples": need, "decision": decision,
            "candidate": {"version": candidate_version, "n": cand_n, "mean": round(cand_mean, 4) if cand_n else None},
            "baseline": {"versions": sorted(v for v in by_version if v != candidate_version), "n": base_n,
                         "mean": round(base_mean, 4) if base_n else None}}


def describe(check: dict[str, Any]) -> str:
    c, b = check["candidate"], check["baseline"]
    return (f"{check['metric']}: candidate v{c['version']} {c['mean']} (n={c['n']}) vs baseline {b['mean']}"
            f" (n={b['n']}), margin {check['margin']}")


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A rollout as the API and the CLI show it (times as Unix seconds)."""
    def seconds(value: Any) -> int | None:
        return int(value.timestamp()) if value is not None else None

    return {"object": "prompt_rollout", "id": str(row["id"]), "tenant_id": row["tenant_id"], "name": row["name"],
            "label": row["label"], "candidate_version": row["candidate_version"],
            "baseline_version": row["baseline_version"], "share": float(row["share"]), "sticky_by": row["sticky_by"],
            "metric": row["metric"], "margin": round(float(row["margin"]), 6), "min_samples": row["min_samples"],
            "state": row["state"], "reason": row["reason"], "last_check": row["last_check"],
            "created_by": row["created_by"], "created_at": seconds(row["created_at"]),
            "updated_at": seconds(row["updated_at"]), "ended_at": seconds(row["ended_at"])}
