"""The gateway benchmark's client and peer handling, against a loopback upstream (no gateway needed):
latencies are measured per successful request, failures are counted and kept out of the figures, and a
peer that cannot be installed is reported as skipped rather than crashing the run."""

from __future__ import annotations

import collections
import subprocess
import sys
import time

import pytest

from bench import gateway_overhead as gw
from tests.support.upstreams import Fault, OpenAIUpstream


def test_load_measures_every_request_at_the_client() -> None:
    with OpenAIUpstream(latency_s=0.02) as up:
        target = gw.Target("direct", up.base_url, "sk-test", "m", extra={"stratus": {"cache": False}})
        res = gw.load(target, concurrency=4, requests=24)
        bodies = [r.body for r in up.requests]
    assert len(res.latencies_s) == 24 and not res.errors
    assert min(res.latencies_s) >= 0.02  # never less than the upstream's own delay
    assert res.rps > 0
    questions = {b["messages"][0]["content"] for b in bodies}
    assert len(questions) == 24  # distinct questions, so no cache can answer them
    assert all(b["stratus"] == {"cache": False} and b["max_tokens"] == 32 for b in bodies)


def test_failed_requests_are_counted_not_timed() -> None:
    with OpenAIUpstream() as up:
        up.inject(Fault.status(500), Fault.status(429))
        res = gw.load(gw.Target("direct", up.base_url, "k", "m"), concurrency=1, requests=10)
    assert len(res.latencies_s) == 8
    assert res.errors == {"http 500": 1, "http 429": 1}


def test_overhead_subtracts_the_upstream_delay() -> None:
    res = gw.LoadResult([gw.UPSTREAM_LATENCY_S + 0.004] * 9 + [gw.UPSTREAM_LATENCY_S + 0.1], 1.0,
                        collections.Counter(), collections.Counter())
    figures = gw._overhead(res)
    assert figures["p50_ms"] == pytest.approx(4.0, abs=0.01)
    assert figures["p99_ms"] > 50 and figures["errors"] == 0 and figures["rps"] == 10.0


def test_cpu_seconds_count_a_process_and_its_children() -> None:
    import psutil

    # Given a parent that only sleeps, and its child that burns CPU until stopped
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time\n"
                               "subprocess.Popen([sys.executable, '-c', 'while True: pass'])\ntime.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        start = gw.cpu_seconds(parent.pid)
        time.sleep(1.5)
        spent = gw.cpu_seconds(parent.pid) - start
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
    # Then the child's CPU counts with the parent's (even a machine shared with others gives it some)
    assert spent >= 0.1
    assert gw.cpu_seconds(None) is None


def test_ratios_and_targets() -> None:
    result = {"overhead": {"concurrency_1": {"ratio_p50": 0.4, "ratio_p99": 0.6},
                           "concurrency_16": {"throughput_ratio": 2.3, "guard_throughput_ratio": 0.65}}}
    met = gw._targets_met(result)
    assert met["concurrency_1_p50_ratio_le_0.5"] is True
    assert met["concurrency_1_p99_ratio_le_0.5"] is False
    assert met["concurrency_16_p50_ratio_le_0.5"] is None  # not measured: neither met nor missed
    assert met["concurrency_16_throughput_ratio_ge_2"] is True
    assert met["concurrency_16_guard_throughput_ratio_ge_0.7"] is False  # rails on below 0.7 x rails off


def test_a_peer_that_cannot_install_is_skipped_with_its_reason(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(gw, "PEER_VENV", tmp_path / "peer-venv")
    calls = []

    def fake_run(argv, **kw):  # noqa: ANN001, ANN003 - subprocess.run's signature
        calls.append(argv)
        if "install" in argv:
            raise subprocess.CalledProcessError(1, argv, stderr="ERROR: No matching distribution found")
        (tmp_path / "peer-venv" / "bin").mkdir(parents=True)
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(gw.subprocess, "run", fake_run)
    with pytest.raises(gw.PeerUnavailable, match="No matching distribution"):
        gw.ensure_litellm()
    assert not (tmp_path / "peer-venv").exists()  # a half-made venv must not pass for an installed one
    assert any("venv" in a for a in calls[0])
