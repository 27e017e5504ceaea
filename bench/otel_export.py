"""What exporting OpenTelemetry spans costs a Lambda invocation, and what the gateway's cold start imports.

    python -m bench.run otel
    python -m bench.otel_export [--runs N] [--invocations N] [--quick] [--out PATH]

- `flush`: one process plays a warm Lambda environment. Each "invocation" opens a SERVER span with
  `spans_per_invocation - 1` children (about what a task function records), then calls `telemetry.flush()`
  as the functions' extension does while the runtime posts the result (a handler without one, before). The
  spans go through the same BatchSpanProcessor and lazy OTLP/HTTP exporter the functions use, to a real
  OTLP/HTTP receiver on loopback (tests/lambda_contract/otlp.py decodes every protobuf request). Reported:
  the spans' own time, the flush (the extension's work: billed duration, after the result), the first flush
  of the process (the exporter's import and connection), and, for comparison, a SimpleSpanProcessor that
  posts each span as it ends (export on the request path).
- `handler_import`: `import app` of functions/gateway in a fresh interpreter with the Lambda variables
  set (as the Runtime Interface Client imports it), timed inside the process (interpreter start excluded),
  median of `runs`; with and without an OTLP endpoint. `--baseline DIR` (a checkout's shared/ and
  functions/, e.g. `git archive <commit> shared functions | tar -x -C DIR`) imports that one too,
  interleaved run by run: how the recorded figure compares the gateway before and after the X-Ray SDK went.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, record, summary_ms

IMPORT_PROBE = ("import time, json; t = time.perf_counter(); import app; "
                "print(json.dumps({'ms': (time.perf_counter() - t) * 1000, "
                "'xray_sdk': 'aws_xray_sdk' in __import__('sys').modules, "
                "'otel_sdk': 'opentelemetry.sdk.trace' in __import__('sys').modules}))")


def _import_env(root: Path, otlp_endpoint: str | None) -> dict[str, str]:
    """Lambda's variables for the gateway of the checkout at `root` (its folder as the task root)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "STRATUS_", "AWS_LAMBDA"))}
    env |= {"LAMBDA_TASK_ROOT": str(root / "functions" / "gateway"), "AWS_LAMBDA_FUNCTION_NAME": "stratus-gateway",
            "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "STRATUS_ENV": "dev",
            "STRATUS_TRACING": "true",  # what the template set before the X-Ray SDK went; ignored since
            # resource names the settings require outside local mode (nothing is reached at import)
            "DATABASE_URL": "postgresql://stratus_app@db.invalid/stratus", "STRATUS_DOCUMENTS_BUCKET": "bench",
            "STRATUS_QUERY_STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:query",
            "PYTHONPATH": os.pathsep.join([str(root / "shared"), str(ROOT)])}
    if otlp_endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint
    return env


def _import_once(root: Path, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", IMPORT_PROBE], cwd=root / "functions" / "gateway", env=env,
                         capture_output=True, text=True, check=True, timeout=120)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def handler_import(runs: int, otlp_endpoint: str | None, baseline: Path | None = None) -> dict[str, Any]:
    """`import app` of the gateway as Lambda's runtime does it, median of `runs` after one untimed warm-up
    (bytecode, the OS's file cache); with `baseline` (another checkout), that one too, interleaved run by run."""
    roots = {"current": ROOT} | ({"baseline": baseline} if baseline is not None else {})
    envs = {name: _import_env(root, otlp_endpoint) for name, root in roots.items()}
    samples: dict[str, list[float]] = {name: [] for name in roots}
    seen: dict[str, dict[str, Any]] = {}
    for n in range(runs + 1):
        for name, root in roots.items():
            seen[name] = _import_once(root, envs[name])
            if n:
                samples[name].append(seen[name]["ms"])
    return {name: {"median_ms": round(statistics.median(timed), 1), "min_ms": round(min(timed), 1),
                   "max_ms": round(max(timed), 1), "runs": len(timed),
                   "imports_xray_sdk": seen[name]["xray_sdk"], "imports_otel_sdk": seen[name]["otel_sdk"]}
            for name, timed in samples.items()}


def _invocation(spans_per_invocation: int) -> None:
    from stratus import spans

    with spans.server_span("retrieve"):
        for i in range(spans_per_invocation - 1):
            with spans.span("step", tenant_id="t-bench", index=i) as step:
                step.annotate(candidates=10, outcome="ok")


def flush(invocations: int, spans_per_invocation: int) -> dict[str, Any]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from stratus import spans, telemetry
    from stratus.config import load_settings
    from tests.lambda_contract.otlp import OTLPCollector

    collector = OTLPCollector().start()
    settings = load_settings(otel_endpoint=collector.url)
    endpoint = telemetry.traces_endpoint(settings)
    assert endpoint is not None
    telemetry.reset()
    try:
        provider = telemetry.configure("bench", settings)
        span_time, flush_time = [], []
        first_flush_s = 0.0
        for n in range(invocations + 1):
            t0 = time.perf_counter()
            _invocation(spans_per_invocation)
            t1 = time.perf_counter()
            assert telemetry.flush(), "the flush timed out"
            t2 = time.perf_counter()
            if n == 0:
                first_flush_s = t2 - t1  # the exporter's import (protobuf, requests) and first connection
                continue
            span_time.append(t1 - t0)
            flush_time.append(t2 - t1)
        received = len(collector.spans)
        expected = (invocations + 1) * spans_per_invocation
        assert received == expected, f"the receiver got {received} spans of {expected}"
        telemetry.reset()

        # The alternative: export each span when it ends, on the request's thread.
        sync = telemetry.new_provider(settings, "bench")
        sync.add_span_processor(SimpleSpanProcessor(telemetry.lazy_otlp_exporter(endpoint)))
        spans.use(sync)
        _invocation(spans_per_invocation)  # the exporter's import, untimed
        sync_time = []
        for _ in range(invocations):
            t0 = time.perf_counter()
            _invocation(spans_per_invocation)
            sync_time.append(time.perf_counter() - t0)
        spans.use(None)
        sync.shutdown()
        del provider
    finally:
        telemetry.reset()
        collector.stop()
    return {"spans_per_invocation": spans_per_invocation, "invocations": invocations,
            "spans_received": received,
            "batch_spans": summary_ms(span_time), "batch_flush_at_end": summary_ms(flush_time),
            "batch_first_flush_ms": round(first_flush_s * 1000, 2),
            "simple_processor_spans": summary_ms(sync_time)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_IMPORT_RUNS", "7")))
    parser.add_argument("--invocations", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="a few runs, for the test that keeps this working")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--baseline", type=Path, help="another checkout's root (shared/, functions/) to import "
                        "interleaved with this one: e.g. the commit before the X-Ray SDK was removed")
    args = parser.parse_args([] if argv is None else argv)  # bench.run calls main() with its own argv
    runs, invocations = (2, 10) if args.quick else (args.runs, args.invocations)
    load = [round(x, 2) for x in os.getloadavg()]
    result: dict[str, Any] = {
        "conditions": "2 shared cores, load average at start and end recorded; loopback receiver",
        "load_average_at_start": load,
        "flush": {n: flush(invocations, n) for n in (8, 30)},
        "handler_import": {"otel_off": handler_import(runs, None, args.baseline),
                           "otel_on": handler_import(runs, "http://127.0.0.1:4318", args.baseline)},
    }
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.baseline is not None:
        result["baseline"] = os.environ.get("BENCH_BASELINE_LABEL", str(args.baseline))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    else:
        record("otel_export", result)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=2))
