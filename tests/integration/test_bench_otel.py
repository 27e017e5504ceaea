"""The OpenTelemetry export benchmark (bench/otel_export.py) in its quick form: every span reaches the
loopback OTLP receiver through the flush, and the gateway's import is measured with and without an endpoint
(this checkout as its own baseline, to exercise the interleaving)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import otel_export
from bench.common import ROOT


def test_the_benchmark_measures_the_flush_and_the_gateways_import(tmp_path: Path) -> None:
    out = tmp_path / "otel.json"
    result = otel_export.main(["--quick", "--out", str(out), "--baseline", str(ROOT)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    for n, flush in result["flush"].items():
        assert flush["spans_received"] == (flush["invocations"] + 1) * n  # nothing lost, nothing left queued
        assert flush["batch_flush_at_end"]["n"] == flush["invocations"] and flush["batch_first_flush_ms"] > 0
        assert flush["simple_processor_spans"]["n"] == flush["invocations"]
    off, on = result["handler_import"]["otel_off"], result["handler_import"]["otel_on"]
    assert not off["current"]["imports_xray_sdk"] and not on["current"]["imports_xray_sdk"]
    assert not off["current"]["imports_otel_sdk"] and on["current"]["imports_otel_sdk"]
    assert off["baseline"]["runs"] == off["current"]["runs"] == 2
