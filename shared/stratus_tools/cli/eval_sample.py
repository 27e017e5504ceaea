"""`stratus eval sample`: one online-evaluation run now, against the local stack's database (or
DATABASE_URL), as the scheduled eval_sampler function would run it."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_eval_sample_parser(eval_sub: Any) -> None:
    sample = eval_sub.add_parser("sample", help="score the requests sampled since the last run (online evaluation)")
    sample.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    sample.set_defaults(func=_cmd_sample)


def _cmd_sample(args: argparse.Namespace) -> int:
    from stratus.evals.sampler import run_sampler
    from stratus_tools.local.commands import command_connection

    with command_connection() as conn:
        result = run_sampler(conn=conn)
    out = {"run_id": result.run_id, "window_from": result.window_from.isoformat(),
           "window_to": result.window_to.isoformat(), **result.summary()}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"run {result.run_id}: {result.samples} samples scored ({result.scores} scores, {result.score_errors} "
          f"not computed, {result.judge_failures} judge failures) in {result.seconds:.1f} s; window "
          f"{out['window_from']} .. {out['window_to']}")
    for r in result.regressions:
        print(f"  regression: tenant {r['tenant_id']} {r['prompt']} {r['metric']} {r['mean']:.3f} "
              f"(baseline {r['baseline']:.3f} over {r['baseline_runs']} runs, n {r['n']})")
    for tenant, drift in result.drift.items():
        if drift.get("drifted"):
            print(f"  drift: tenant {tenant}: {json.dumps(drift)} (examples: stratus report)")
    return 0
