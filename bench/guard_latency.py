"""Guard rails' latency: warm per-input p50/p95, first-use load time per rail, and the cold start of
importing the scan module.

    python -m bench.guard_latency

Inputs: a ~50-word user question and a ~300-token pasted document (a retrieved chunk's size), both with
a little PII so the PII rail does real work. Warm figures are the median over RUNS runs of ROUNDS calls
each. First-use load and cold start run in fresh interpreters (median of several), since a loaded model
cannot be unloaded in-process. Targets from the issue: input rails p50 <= 30 ms, guard cold start <= 400 ms
(output rails, <= 30 ms p50 on a 300-token answer, are measured once they exist).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from bench.common import ROOT, record, summary_ms

RUNS = int(os.environ.get("BENCH_GUARD_RUNS", "5"))
ROUNDS = int(os.environ.get("BENCH_GUARD_ROUNDS", "40"))
TARGETS_MS = {"input_rails_p50": 30, "output_rails_p50": 30, "cold_start": 400}

SHORT = ("Hi, I'm Maria Lopez from the Denver office. Our team lead asked me to check whether the travel "
         "policy still covers economy plus on flights longer than six hours, and whether I can book it "
         "myself or need approval first. You can reach me at maria.lopez@example.com if anything is unclear.")
_PARAGRAPH = ("The expense policy applies to all employees and contractors who travel on company business. "
              "Receipts must be submitted within thirty days through the finance portal, and each claim "
              "needs the project code, the purpose of the trip and the names of any guests. Meals are "
              "reimbursed up to the daily limit for the destination city; alcohol is not reimbursed unless "
              "a director approved it in advance. Questions go to the finance team at finance@example.com "
              "or to Daniel Okafor on extension 4471. ")
LONG = _PARAGRAPH * 3  # ~300 tokens (MiniLM word pieces), about 220 words

LOAD_PROBE = """
import sys, time
from stratus.guard.scan import RAILS
rail = RAILS[sys.argv[1]]
t = time.perf_counter(); rail.load(); loaded = time.perf_counter() - t
t = time.perf_counter(); rail.check(sys.argv[2]); first = time.perf_counter() - t
print(loaded * 1000, first * 1000)
"""
IMPORT_PROBE = ("import time; t = time.perf_counter(); import stratus.guard.scan;"
                " print((time.perf_counter() - t) * 1000)")


def _fresh(code: str, *args: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "STRATUS_ENV": "local"})
    return [float(x) for x in out.stdout.split()]


def _warm(fn, text: str) -> dict[str, float]:  # noqa: ANN001
    fn(text)
    runs = []
    for _ in range(RUNS):
        samples = []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            fn(text)
            samples.append(time.perf_counter() - t)
        runs.append(summary_ms(samples))
    return {"p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
            "p95_ms": round(statistics.median(r["p95_ms"] for r in runs), 2), "runs": RUNS, "rounds": ROUNDS}


def main() -> dict:
    from stratus.embeddings import get_embedder
    from stratus.guard.scan import RAILS, scan_text

    tokens = {"short": get_embedder("all-MiniLM-L6-v2-int8").count_tokens(SHORT),
              "long": get_embedder("all-MiniLM-L6-v2-int8").count_tokens(LONG)}
    inputs = {"short": SHORT, "long": LONG}
    input_rails = [RAILS["injection"], RAILS["pii"]]
    warm: dict[str, dict] = {}
    for label, text in inputs.items():
        for rail in input_rails:
            warm[f"{rail.name}/{label}"] = _warm(rail.check, text)
        warm[f"input_rails/{label}"] = _warm(lambda t: scan_text(t, input_rails), text)
        print(f"guard {label:<5} ({tokens[label]} tokens): "
              + "  ".join(f"{k.split('/')[0]} p50 {v['p50_ms']} ms" for k, v in warm.items() if k.endswith(label)))

    first_use = {}
    for rail in input_rails:
        probes = [_fresh(LOAD_PROBE, rail.name, SHORT) for _ in range(3)]
        first_use[rail.name] = {"load_ms": round(statistics.median(p[0] for p in probes), 1),
                                "first_check_ms": round(statistics.median(p[1] for p in probes), 1)}
        print(f"guard first use {rail.name}: {first_use[rail.name]}")
    _fresh(IMPORT_PROBE)  # compiles .pyc files, as a deployed layer ships them
    cold = round(statistics.median(_fresh(IMPORT_PROBE)[0] for _ in range(7)), 1)
    print(f"guard cold start (import stratus.guard.scan): {cold} ms (target {TARGETS_MS['cold_start']} ms)")

    p50s = {label: warm[f"input_rails/{label}"]["p50_ms"] for label in inputs}
    out = {
        "tokens": tokens, "warm": warm, "first_use": first_use, "import_scan_ms": cold,
        "targets_ms": TARGETS_MS,
        "meets_target": {"input_rails_p50": {k: v <= TARGETS_MS["input_rails_p50"] for k, v in p50s.items()},
                         "cold_start": cold <= TARGETS_MS["cold_start"]},
        "output_rails": "not measured yet: the output rails are not in the registry",
    }
    record("guard_latency", out)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
