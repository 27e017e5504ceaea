"""Cold start per function: a fresh interpreter imports the handler module and runs its module-level
setup (settings validation, clients it creates at import). Median of several runs.

Two figures per function: `import_ms`, measured inside the fresh process around the import (what a
Lambda init phase adds on top of the runtime's own start), and `process_ms`, the whole process from
spawn to exit, for comparison with a bare `python -c pass` measured in the same run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, record

RUNS = int(os.environ.get("BENCH_COLD_RUNS", "7"))
TARGETS_MS = {"ingest": 300, "retrieve": 300, "generate": 300, "gateway": 500, "guard": 400,
              "eval_sampler": 300}

PROBE = """
import importlib.util, sys, time
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("handler_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
assert callable(getattr(module, "handler"))
print((time.perf_counter() - t) * 1000)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "STRATUS_ENV": "local",
                "PYTHONDONTWRITEBYTECODE": "0"})
    return env


def measure(app: Path) -> dict[str, float]:
    imports, processes = [], []
    # One warm-up run compiles the .pyc files, as a deployed layer ships them compiled.
    for i in range(RUNS + 1):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", PROBE, str(app)], capture_output=True, text=True,
                             env=_env(), cwd=ROOT, check=True)
        elapsed = (time.perf_counter() - t) * 1000
        if i:
            imports.append(float(out.stdout.strip().splitlines()[-1]))
            processes.append(elapsed)
    return {"import_ms": round(statistics.median(imports), 1), "process_ms": round(statistics.median(processes), 1)}


def main() -> dict:
    bare = []
    for _ in range(RUNS):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=_env())
        bare.append((time.perf_counter() - t) * 1000)
    results = {}
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        name = app.parent.name
        figures = measure(app)
        target = TARGETS_MS.get(name)
        figures["target_ms"] = target
        figures["meets_target"] = target is not None and figures["import_ms"] <= target
        results[name] = figures
        print(f"cold start {name:<13} import {figures['import_ms']:7.1f} ms  process {figures['process_ms']:7.1f} ms"
              f"  (target {target} ms)")
    out = {"runs": RUNS, "bare_interpreter_ms": round(statistics.median(bare), 1), "functions": results}
    record("cold_start", out)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
