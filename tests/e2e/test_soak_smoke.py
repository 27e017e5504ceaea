"""The soak and chaos run (bench/soak.py) for ~30 s with every fault kind once, in its own process (the local
stack is one per process): provider 429 / 5xx / timeout / mid-stream cut, database restarts, poison and
duplicate ingest messages, an ingest batch killed half-way. The counts that must be zero are asserted.

While only the provider fails, the gateway's typed provider errors (502 all_deployments_failed, 503
circuit_open, 504 timeout) are its honest answer and are counted apart; during a database outage the only
acceptable 5xx is 503. Every other count must be zero, stuck reservations included (a settlement the
database missed is retried).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 32
# The tight tenant's limit for this short run: its one client thread must send more than this many requests
# in 32 s for a refusal to be seen. At the soak's 40 a loaded 2-core machine sometimes did not (a request
# took over 0.8 s); at 10 it has 3 s a request.
TIGHT_RPM = 10


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("soak") / "soak.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), str(ROOT / "shared"))))
    proc = subprocess.run([sys.executable, "-m", "bench.soak", "--seconds", str(SECONDS), "--out", "",
                           "--json", str(out), "--tight-rpm", str(TIGHT_RPM)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_a_short_soak_with_every_fault_loses_nothing_and_overspends_nothing(result: dict) -> None:
    faults = result["faults"]
    for kind in ("provider_429", "provider_5xx", "provider_timeout", "stream_cut", "poison", "duplicate",
                 "ingest_kill"):
        assert faults.get(kind, 0) >= 1, (kind, faults)
    # Faults wait for the previous one to be consumed, so on a busy machine the schedule slips and a 32 s run
    # may fit one database restart instead of two; the full soak (make soak) does both, and more.
    assert faults.get("db_restart", 0) >= 1, faults
    assert result["ingest_kills_done"] == 1
    assert not any(k.endswith("_injection_failed") for k in faults), faults
    assert result["ingest_queue_drained"]

    zero = result["counts_that_must_be_zero"]
    assert zero["documents_lost"] == 0 and zero["documents_half_visible"] == 0, json.dumps(result["documents"])
    assert result["documents"]["uploaded"] > 0 and result["documents"]["ready"] > 0
    assert zero["5xx_outside_fault_windows"] == 0, result["bad_requests"]
    assert zero["budget_overspend_usd"] == 0, result["budget"]
    assert zero["rate_limit_over_admission"] == 0, result["rate_limit"]
    assert result["rate_limit"]["refused_429"] > 0  # the limit was really reached

    assert zero["non_503_5xx_in_fault_windows"] == 0, result["bad_requests"]
    assert zero["stuck_reservations"] == 0, result["budget"]
    assert result["ok"], zero
    for kind in ("chat", "rag", "stream"):
        assert result["latency_outside_fault_windows"][kind]["n"] > 0
