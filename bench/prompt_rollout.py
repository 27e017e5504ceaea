"""What a prompt rollout adds to resolving a request's prompt version.

    python -m bench.run rollout          (or: python -m bench.prompt_rollout)

Three variants, alternated call by call (so load on the machine hits them alike), each in its own tenant
transaction as the gateway's admission transaction reads it: `label` (resolve_prompt: the label alone, the
path before rollouts), `no_rollout` (serve_prompt with sticky keys, the label having no active rollout) and
`rollout` (serve_prompt on a label with an active 50% rollout, keys on both sides). Figures: per round the
median of each variant, then the median over rounds of (variant - label).
BENCH_ROLLOUT_ROUNDS (default 5) and BENCH_ROLLOUT_CALLS (default 200 per variant and round) set the scale.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.common import ROOT, database, record, summary_ms

PROMPT = {"model": "fast", "variables": [], "messages": [{"role": "system", "content": "Be brief."},
                                                          {"placeholder": "history"}]}


def _setup(url: str) -> tuple[str, str, str]:
    """Two tenants and one prompt at v1 and v2 (production: v1); the first tenant rolls v2 out to 50%."""
    import psycopg
    from psycopg.types.json import Jsonb

    from stratus import audit, prompt_rollouts
    from stratus.db import documents
    from stratus.db.connection import connect, tenant_transaction
    from stratus.prompts.models import build_prompt
    from stratus.prompts.registry import promote

    name = f"bench-ro-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url) as owner:
        for version in (1, 2):
            p = build_prompt(name, version, {**PROMPT, "description": f"v{version}"}, source="bench")
            owner.execute("INSERT INTO prompt_versions (name, version, content, content_hash) VALUES (%s, %s, %s, %s)",
                          [name, version, Jsonb(p.canonical()), p.content_hash])
        promote(owner, name, 1, "production")
        owner.commit()
    with_rollout, without = f"bench-ro-{uuid.uuid4().hex[:8]}", f"bench-ro-{uuid.uuid4().hex[:8]}"
    conn = connect(url)
    try:
        for tenant in (with_rollout, without):
            with tenant_transaction(tenant, conn):
                documents.ensure_tenant(conn, tenant)
        actor = audit.Actor(key_id="bench", tenant_id=with_rollout, scopes=("admin",))
        prompt_rollouts.start(conn, actor, with_rollout, name=name, version=2, label="production", share=50)
    finally:
        conn.close()
    return name, with_rollout, without


def _rounds(variants: dict[str, Callable[[int], None]], rounds: int, calls: int) -> dict[str, Any]:
    names = list(variants)
    medians: dict[str, list[float]] = {n: [] for n in names}
    samples: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        per: dict[str, list[float]] = {n: [] for n in names}
        for i in range(calls):
            order = names[i % len(names):] + names[:i % len(names)]  # each variant leads in turn
            for n in order:
                t0 = time.perf_counter()
                variants[n](i)
                per[n].append(time.perf_counter() - t0)
        for n in names:
            medians[n].append(statistics.median(per[n]))
            samples[n] += per[n]
    base = names[0]
    out: dict[str, Any] = {n: summary_ms(samples[n]) for n in names}
    for n in names[1:]:
        added = [(m - b) * 1000 for m, b in zip(medians[n], medians[base], strict=True)]
        out[f"{n}_added_ms_per_round"] = [round(x, 4) for x in added]
        out[f"{n}_added_ms_median"] = round(statistics.median(added), 4)
    return out


def run(url: str, rounds: int, calls: int) -> dict[str, Any]:
    from stratus.db.connection import connect, tenant_transaction
    from stratus.prompts.registry import resolve_prompt
    from stratus.prompts.rollout import serve_prompt
    from stratus.workflow_state import StickyKeys

    name, with_rollout, without = _setup(url)
    conn = connect(url)
    served: dict[int, int] = {1: 0, 2: 0}

    def label(i: int) -> None:
        with tenant_transaction(without, conn):
            resolve_prompt(conn, without, name, label="production")

    def no_rollout(i: int) -> None:
        with tenant_transaction(without, conn):
            serve_prompt(conn, without, name, label="production", sticky=StickyKeys(user=f"u{i}", key="k"))

    def rollout(i: int) -> None:
        with tenant_transaction(with_rollout, conn):
            got = serve_prompt(conn, with_rollout, name, label="production", sticky=StickyKeys(user=f"u{i}", key="k"))
        served[got.prompt.version] += 1

    try:
        result = _rounds({"label": label, "no_rollout": no_rollout, "rollout": rollout}, rounds, calls)
    finally:
        conn.close()
    return {**result, "rollout_share_percent": 50,
            "candidate_share_observed": round(served[2] / max(1, served[1] + served[2]), 3),
            "rounds": rounds, "calls_per_variant_and_round": calls}


def main(url: str | None = None) -> dict[str, Any]:
    rounds = int(os.environ.get("BENCH_ROLLOUT_ROUNDS", "5"))
    calls = int(os.environ.get("BENCH_ROLLOUT_CALLS", "200"))
    load = [round(x, 2) for x in os.getloadavg()]
    with database(url, ROOT / ".stratus" / "bench-rollout" / "pg") as db_url:
        result = run(db_url, rounds, calls)
    result["load_average_at_start_and_end"] = [load, [round(x, 2) for x in os.getloadavg()]]
    record("prompt_rollout", result)
    return result


if __name__ == "__main__":
    main()
