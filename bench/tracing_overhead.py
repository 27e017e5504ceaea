"""What OpenTelemetry tracing costs a gateway request, and how many spans a request makes.

    python -m bench.run tracing      (or python -m bench.tracing_overhead)

- `overhead`: two gateways, started as bench/gateway_overhead.py starts Stratus (uvicorn, one worker, the
  same database, the same loopback OpenAI upstream in its own process), one with tracing off (no endpoint)
  and one with OTEL_EXPORTER_OTLP_ENDPOINT at a real OTLP/HTTP receiver on loopback
  (tests/lambda_contract/otlp.py decodes and counts every span it gets). At concurrency 1 the client sends
  the same request mix to both, alternating off/on request by request so drift and other work hit both
  alike: a non-streamed chat for a tenant with every rail off, the same for a tenant on the default rails,
  and a streamed chat on the default rails (timed to `[DONE]`). Per round and kind: p50 and p99 of each
  side, then on minus off; reported: the median over the rounds. Also each gateway process's CPU time per
  request (/proc), which moves less than wall time on a loaded machine, and the span count the receiver got.
- `spans_per_request`: `stratus dev` (the whole local stack in one process: moto, Step Functions running the
  query workflow on the local task handlers, the SQS poller feeding ingest) exporting to the receiver; one
  request of each kind with a caller's `traceparent` (plain chat, streamed chat, non-streamed RAG through the
  workflow, streamed RAG) and one document put in the documents bucket: the spans of each one's trace, their
  names, and the depth of the tree.

Results in bench/results/tracing_overhead.json; the load average is noted at the start and the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import ROOT, database, record, summary_ms

ROUNDS = int(os.environ.get("BENCH_TRACING_ROUNDS", "5"))
REQUESTS = int(os.environ.get("BENCH_TRACING_REQUESTS", "40"))  # per kind, per side, per round
KINDS = ("chat_rails_off", "chat_default_rails", "stream_default_rails")
TARGET_P50_ADDED_MS = 0.5
DOCUMENT = (b"# Key rotation\n\nAPI keys are rotated every 90 days by the security team. A rotated key keeps "
            b"working for 24 hours so that clients can switch without downtime.\n")
QUESTION = "How often are API keys rotated?"


# --- the request mix ---------------------------------------------------------------------------------------
def _request(client: Any, base_url: str, key: str, kind: str, i: int, headers: dict[str, str] | None = None,
             model: str | None = None) -> float:
    """One request of `kind`, timed at the client to its last byte; raises on anything but a full answer."""
    from bench.gateway_overhead import MODEL

    stream = kind.startswith("stream")
    body = {"model": model or MODEL, "max_tokens": 32, "stream": stream, "stratus": {"cache": False},
            "messages": [{"role": "user", "content": f"How do I rotate key {i}?"}]}
    hdrs = {"authorization": f"Bearer {key}", **(headers or {})}
    start = time.perf_counter()
    if not stream:
        r = client.post(f"{base_url}/chat/completions", json=body, headers=hdrs)
        elapsed = time.perf_counter() - start
        if r.status_code != 200 or not r.json()["choices"][0]["message"]["content"]:
            raise RuntimeError(f"{kind}: {r.status_code} {r.text[:300]}")
        return elapsed
    done = False
    with client.stream("POST", f"{base_url}/chat/completions", json=body, headers=hdrs) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{kind}: {r.status_code} {r.read()[:300]!r}")
        for line in r.iter_lines():
            done = done or line.strip() == "data: [DONE]"
    elapsed = time.perf_counter() - start
    if not done:
        raise RuntimeError(f"{kind}: the stream ended without [DONE]")
    return elapsed


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads: the batch export's worker included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- tracing on vs off -------------------------------------------------------------------------------------
@contextmanager
def _otel_env(endpoint: str | None) -> Any:
    """os.environ with the OTEL_* variables as one gateway should see them (start_stratus copies os.environ)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}
    for k in saved:
        del os.environ[k]
    if endpoint:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("OTEL_")]:
            del os.environ[k]
        os.environ.update(saved)


EXPORT_QUIET_S = 6.0  # longer than the SDK's default batch schedule (OTEL_BSP_SCHEDULE_DELAY, 5 s)


def overhead(database_url: str, work: Path, *, rounds: int = ROUNDS, requests: int = REQUESTS) -> dict[str, Any]:
    import httpx2

    from bench.gateway_overhead import start_stratus, start_upstream
    from tests.lambda_contract.otlp import OTLPCollector

    receiver = OTLPCollector().start()
    servers: list[Any] = []
    try:
        upstream, upstream_url = start_upstream(work)
        servers.append(upstream)
        sides: dict[str, dict[str, Any]] = {}
        for side, endpoint in (("off", None), ("on", receiver.url)):
            (work / side).mkdir()
            with _otel_env(endpoint):
                server, plain, guarded = start_stratus(upstream_url, database_url, work / side)
            servers.append(server)
            sides[side] = {"pid": server.proc.pid, "url": plain.base_url,
                           "keys": {"chat_rails_off": plain.api_key, "chat_default_rails": guarded.api_key,
                                    "stream_default_rails": guarded.api_key}}
        samples: dict[str, dict[str, list[list[float]]]] = {k: {"off": [], "on": []} for k in KINDS}
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        with httpx2.Client(timeout=60) as c_off, httpx2.Client(timeout=60) as c_on:
            clients = {"off": c_off, "on": c_on}
            for side, s in sides.items():  # untimed: imports, pools, the first database round trips
                for kind in KINDS:
                    for i in range(3):
                        _request(clients[side], s["url"], s["keys"][kind], kind, -i)
            for r in range(rounds):
                order = ("off", "on") if r % 2 == 0 else ("on", "off")
                cpu_before = {side: _cpu_s(s["pid"]) for side, s in sides.items()}
                for kind in KINDS:
                    got: dict[str, list[float]] = {"off": [], "on": []}
                    for i in range(requests):
                        for side in order:
                            s = sides[side]
                            got[side].append(_request(clients[side], s["url"], s["keys"][kind], kind, i))
                    for side in got:
                        samples[kind][side].append(got[side])
                for side, s in sides.items():
                    cpu[side].append((_cpu_s(s["pid"]) - cpu_before[side]) / (requests * len(KINDS)))
                print(f"tracing round {r + 1}/{rounds}: " + ", ".join(
                    f"{k} +{_ms(statistics.median(samples[k]['on'][-1]) - statistics.median(samples[k]['off'][-1]))}"
                    " ms p50" for k in KINDS))
        # The batch processor exports every 5 s: spans are settled only after a quiet spell longer than that
        # (one second of quiet could fall between two exports and lose the last batch when the servers stop).
        seen, changed = len(receiver.spans), time.monotonic()
        deadline = changed + 30
        while time.monotonic() < deadline and time.monotonic() - changed < EXPORT_QUIET_S:
            time.sleep(0.25)
            if len(receiver.spans) != seen:
                seen, changed = len(receiver.spans), time.monotonic()
    finally:
        for s in reversed(servers):
            s.stop()
        receiver.stop()
    total = (rounds * requests + 3) * len(KINDS)
    return {"rounds": rounds, "requests_per_kind_side_round": requests, "concurrency": 1,
            "by_kind": {kind: _added(samples[kind]) for kind in KINDS},
            "gateway_cpu_ms_per_request": {side: round(statistics.median(v) * 1000, 3) for side, v in cpu.items()},
            "gateway_cpu_ms_per_request_added": round((statistics.median(cpu["on"]) - statistics.median(cpu["off"]))
                                                      * 1000, 3),
            "receiver": {"spans": len(receiver.spans), "export_requests": receiver.requests,
                         "requests_on": total, "spans_per_request_mean": round(len(receiver.spans) / total, 2)}}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _added(per_side: dict[str, list[list[float]]]) -> dict[str, Any]:
    """Per round: each side's p50 and p99 and on minus off; the medians over the rounds."""
    rounds = []
    for off, on in zip(per_side["off"], per_side["on"], strict=True):
        o, n = summary_ms(off), summary_ms(on)
        rounds.append({"off_p50_ms": o["p50_ms"], "on_p50_ms": n["p50_ms"], "off_p99_ms": o["p99_ms"],
                       "on_p99_ms": n["p99_ms"], "added_p50_ms": round(n["p50_ms"] - o["p50_ms"], 3),
                       "added_p99_ms": round(n["p99_ms"] - o["p99_ms"], 3)})

    def med(key: str) -> float:
        return round(statistics.median(x[key] for x in rounds), 3)

    return {"added_p50_ms": med("added_p50_ms"), "added_p99_ms": med("added_p99_ms"),
            "off_p50_ms": med("off_p50_ms"), "on_p50_ms": med("on_p50_ms"),
            "off_p99_ms": med("off_p99_ms"), "on_p99_ms": med("on_p99_ms"), "rounds": rounds}


# --- spans per request -------------------------------------------------------------------------------------
def spans_per_request(database_url: str, work: Path, upstream_latency_s: float = 0.0) -> dict[str, Any]:
    """`stratus dev` exporting to the receiver: the spans of one request of each kind and of one ingestion."""
    import httpx2

    from tests.lambda_contract.otlp import OTLPCollector
    from tests.support.upstreams import OpenAIUpstream

    receiver = OTLPCollector().start()
    with OpenAIUpstream(latency_s=upstream_latency_s) as up:
        data = work / "dev"
        catalog = work / "dev-models.json"
        catalog.write_text(json.dumps({"default_alias": "bench", "aliases": {"bench": ["loop"]}, "deployments": {
            "loop": {"provider": "openai", "model": "gpt-loop", "base_url": up.base_url, "timeout_s": 30,
                     "price": {"input": 0.4, "output": 1.6}}}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "AWS_", "MOTO_", "OTEL_"))}
        env |= {"DATABASE_URL": database_url, "STRATUS_DATA_DIR": str(data), "STRATUS_MODELS_FILE": str(catalog),
                "STRATUS_OPENAI_API_KEY": "sk-loop", "STRATUS_PROVIDER_MODE": "hosted",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200",
                "PYTHONPATH": os.pathsep.join((str(ROOT / "shared"), str(ROOT)))}
        log = (work / "dev.log").open("w")
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from stratus_tools.cli import main; "
                                 "sys.exit(main(['dev', '--port', '0']))"], env=env, cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=log)
        try:
            exports = dict(proc.stdout.readline().strip().partition("=")[::2] for _ in range(2))  # type: ignore[union-attr]
            if set(exports) != {"STRATUS_BASE_URL", "STRATUS_API_KEY"}:
                raise RuntimeError(f"stratus dev did not start: {(work / 'dev.log').read_text()[-2000:]}")
            base, key = exports["STRATUS_BASE_URL"], exports["STRATUS_API_KEY"]
            out: dict[str, Any] = {"ingest_one_document": _ingest_trace(data, receiver)}
            with httpx2.Client(timeout=60) as client:
                for kind, model in (("chat", "bench"), ("stream_chat", "bench"), ("rag", "rag/bench"),
                                    ("stream_rag", "rag/bench")):
                    trace_id = secrets.token_hex(16)
                    parent = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
                    _request(client, base, key, "stream" if kind.startswith("stream") else "chat", 0, parent, model)
                    out[kind] = _tree(_settled(receiver, trace_id))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
            receiver.stop()
    return out


def _ingest_trace(data: Path, receiver: Any) -> dict[str, Any]:
    """Puts one document in the local stack's bucket (S3 -> SQS -> the poller -> ingest) and returns its trace."""
    import boto3

    state = json.loads((data / "stack.json").read_text())
    s3 = boto3.client("s3", endpoint_url=state["endpoint_url"], region_name=state["region"],
                      aws_access_key_id="stratus-local", aws_secret_access_key="stratus-local")
    s3.put_object(Bucket=state["STRATUS_DOCUMENTS_BUCKET"], Key="tenants/demo/rotation.md", Body=DOCUMENT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stored = [s for s in list(receiver.spans) if s.name == "store"]  # ingestion's last step
        if stored:
            return _tree(_settled(receiver, stored[0].trace_id))
        time.sleep(0.2)
    raise RuntimeError("the document's ingestion trace did not arrive")


def _settled(receiver: Any, trace_id: str, quiet_s: float = 1.5, wait_s: float = 30) -> list[Any]:
    """The trace's spans once no new one has arrived for `quiet_s` (the batch exports every 0.2 s here)."""
    deadline = time.monotonic() + wait_s
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        found = [s for s in list(receiver.spans) if s.trace_id == trace_id]
        if len(found) != seen:
            seen, since = len(found), time.monotonic()
        elif found and time.monotonic() - since >= quiet_s:
            return found
        time.sleep(0.1)
    raise RuntimeError(f"trace {trace_id}: spans still arriving or none after {wait_s} s")


def _tree(found: list[Any]) -> dict[str, Any]:
    """Span count, depth (a root alone is 1) and names of one trace; its roots are the spans whose parent is
    not in it (the caller's span, when it sent a traceparent)."""
    by_id = {s.span_id: s for s in found}
    roots = [s for s in found if s.parent_id not in by_id]

    def depth(s: Any) -> int:
        d = 1
        while s.parent_id in by_id:
            s, d = by_id[s.parent_id], d + 1
        return d

    return {"spans": len(found), "depth": max(depth(s) for s in found), "roots": sorted(s.name for s in roots),
            "names": dict(sorted(Counter(s.name for s in found).items()))}


def main(url: str | None = None, *, rounds: int = ROUNDS, requests: int = REQUESTS) -> dict[str, Any]:
    work = ROOT / ".stratus" / "bench-tracing"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result: dict[str, Any] = {
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "conditions": "client, both gateways, the upstream (own process), the receiver (the client's process) and "
                      "PostgreSQL share this machine's cores; concurrency 1, off/on alternated request by request",
        "gateway": "uvicorn 1 worker (uvloop, httptools) as bench/gateway_overhead.py starts it; key auth, rate "
                   "limits, budget, trace rows; cache off per request; upstream answers after "
                   "BENCH_GATEWAY_UPSTREAM_MS (50 ms)",
        "tracing_on": "OTEL_EXPORTER_OTLP_ENDPOINT at a loopback OTLP/HTTP receiver; the SDK's defaults "
                      "(parentbased_always_on, BatchSpanProcessor exporting every 5 s)",
    }
    with database(url, work / "pg") as database_url:
        result["overhead"] = overhead(database_url, work, rounds=rounds, requests=requests)
        result["spans_per_request"] = spans_per_request(database_url, work)
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    added = [k["added_p50_ms"] for k in result["overhead"]["by_kind"].values()]
    result["target_p50_added_ms"] = TARGET_P50_ADDED_MS
    result["target_met"] = max(added) <= TARGET_P50_ADDED_MS
    for kind, figures in result["overhead"]["by_kind"].items():
        print(f"tracing {kind:<21}: p50 {figures['off_p50_ms']} -> {figures['on_p50_ms']} ms "
              f"(+{figures['added_p50_ms']}), p99 +{figures['added_p99_ms']} ms")
    for kind, tree in result["spans_per_request"].items():
        print(f"spans {kind:<20}: {tree['spans']} spans, depth {tree['depth']}")
    record("tracing_overhead", result)
    return result


if __name__ == "__main__":
    main()
