"""Gateway overhead: Stratus against the LiteLLM proxy, both in front of the same loopback OpenAI upstream.

    python -m bench.gateway_overhead      (starts its own embedded PostgreSQL, upstream and gateways)

The upstream (tests.support.upstreams.OpenAIUpstream, its own process) answers every chat completion
after a fixed delay. One client (httpx2, one keep-alive connection per thread) sends the same non-streamed
chat completions to: the upstream directly (the baseline), the Stratus gateway (uvicorn, one worker, with
API-key auth, key and tenant rate limits, a tenant budget and trace recording on; cache off per request)
and the LiteLLM proxy (one worker, master-key auth, no database). Overhead of a request = its latency at
the client minus the upstream's fixed delay; the direct baseline shows how much of that is the upstream's
own HTTP handling. Nothing any server reports about itself is used. Levels run interleaved within a round
(direct, Stratus, LiteLLM) so drift hits all three alike; figures are medians over the rounds.

Also measured: each gateway process's CPU time per answered request (with its children; psutil), which a
shared machine's load disturbs far less than latency; and the Stratus gateway's throughput at a cached
request (cache on, one question repeated) at concurrency 16. The gateway function's cold start is
bench/cold_start.py's (through the Lambda contract tier).

Everything (client threads, gateways, upstream, PostgreSQL) shares this machine's cores; on a 2-core
machine the figures include that contention, for both gateways alike.

LiteLLM (pinned below) lives in its own virtualenv under .stratus/peers/, created on first use: it pins
versions that conflict with the project's. Without network access the LiteLLM part is skipped and the
reason recorded.
"""

from __future__ import annotations

import collections
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import ROOT, database, record, summary_ms
from stratus_tools.local.ports import free_port

LITELLM = "litellm[proxy]==1.106.2"
PEER_VENV = ROOT / ".stratus" / "peers" / "litellm-venv"  # outside .stratus/bench, which bench.run wipes
UPSTREAM_LATENCY_S = float(os.environ.get("BENCH_GATEWAY_UPSTREAM_MS", "50")) / 1000
ROUNDS = int(os.environ.get("BENCH_GATEWAY_ROUNDS", "3"))
# Requests per round at each concurrency; BENCH_GATEWAY_SCALE shrinks them for a quick look.
_SCALE = float(os.environ.get("BENCH_GATEWAY_SCALE", "1"))
LEVELS = {1: max(20, int(300 * _SCALE)), 16: max(160, int(1000 * _SCALE))}
WARMUP = 50
PEER = os.environ.get("BENCH_GATEWAY_PEER", "litellm")  # "none": skip the peer (rails on/off comparisons)
CACHED_REQUESTS = max(200, int(1000 * _SCALE))
MODEL = "bench"  # the name both gateways expose for the upstream
UPSTREAM_MODEL = "gpt-4.1-mini"

# The upstream in its own process, so its threads do not share the client's interpreter lock.
_UPSTREAM = """
import sys
from tests.support.upstreams import OpenAIUpstream
up = OpenAIUpstream(latency_s=float(sys.argv[1])).start()
print(up.port, flush=True)
sys.stdin.read()  # serve until the parent closes our stdin
up.stop()
"""


class PeerUnavailable(RuntimeError):
    """The peer could not be installed or started; the reason is recorded instead of its figures."""


@dataclass
class Target:
    name: str
    base_url: str  # ends in /v1
    api_key: str
    model: str
    extra: dict[str, Any] = field(default_factory=dict)  # added to every request body
    pid: int | None = None  # the serving process, whose CPU time per request is recorded


@dataclass
class Server:
    """A subprocess serving HTTP, with its output in a log file (read back when it fails)."""

    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _spawn(name: str, argv: list[str], env: dict[str, str], work: Path, **kw: Any) -> Server:
    log = work / f"{name}.log"
    out = log.open("w")
    proc = subprocess.Popen(argv, env=env, cwd=work, stderr=out, stdout=kw.pop("stdout", out), **kw)
    return Server(name, proc, log)


def _wait_ready(server: Server, url: str, timeout_s: float) -> None:
    import httpx2

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise PeerUnavailable(f"{server.name} exited with {server.proc.returncode}:\n{server.tail()}")
        try:
            if httpx2.get(url, timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.25)
    raise PeerUnavailable(f"{server.name} not ready at {url} after {timeout_s:.0f} s:\n{server.tail()}")


def start_upstream(work: Path) -> tuple[Server, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), str(ROOT / "shared"))))  # tests.support, stratus
    server = _spawn("upstream", [sys.executable, "-c", _UPSTREAM, str(UPSTREAM_LATENCY_S)], env, work,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = server.proc.stdout.readline().strip()
    if not port:
        server.stop()
        raise RuntimeError(f"the loopback upstream did not start:\n{server.tail()}")
    return server, f"http://127.0.0.1:{port}/v1"


# --- LiteLLM -------------------------------------------------------------------------------------------
def ensure_litellm() -> Path:
    """The `litellm` executable in its own virtualenv, installed on first use (minutes)."""
    exe = PEER_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    python = shutil.which("python3.11") or sys.executable
    try:
        subprocess.run([python, "-m", "venv", str(PEER_VENV)], check=True, capture_output=True, text=True)
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", LITELLM], check=True,
                       capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        detail = getattr(err, "stderr", "") or str(err)
        shutil.rmtree(PEER_VENV, ignore_errors=True)  # a half-installed venv must not look usable next time
        raise PeerUnavailable(f"cannot install {LITELLM}: {detail.strip()[-600:]}") from None
    return exe


def start_litellm(upstream_url: str, work: Path) -> tuple[Server, Target]:
    exe = ensure_litellm()
    config = work / "litellm.yaml"
    master = f"sk-bench-{uuid.uuid4().hex}"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{UPSTREAM_MODEL}\n"
        f"      api_base: {upstream_url}\n"
        "      api_key: sk-loopback\n"
        "general_settings:\n"
        f"  master_key: {master}\n"
    )
    port = free_port()
    # Offline: the bundled model cost map and tokenizers, no telemetry; no database (master key only).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "DATABASE_URL"))}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
                "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR", "TOKENIZERS_PARALLELISM": "false"})
    server = _spawn("litellm", [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                                "--num_workers", "1"], env, work)
    try:
        _wait_ready(server, f"http://127.0.0.1:{port}/health/liveliness", timeout_s=120)
    except PeerUnavailable:
        server.stop()
        raise
    return server, Target("litellm", f"http://127.0.0.1:{port}/v1", master, MODEL, pid=server.proc.pid)


# --- Stratus -------------------------------------------------------------------------------------------
def start_stratus(upstream_url: str, database_url: str, work: Path) -> tuple[Server, Target, Target]:
    catalog = work / "models.yaml"
    catalog.write_text(
        f"default_alias: {MODEL}\n"
        "deployments:\n"
        "  loopback-openai:\n"
        "    provider: openai\n"
        f"    model: {UPSTREAM_MODEL}\n"
        f"    base_url: {upstream_url}\n"
        "    price: {input: 0.40, output: 1.60, cached_input: 0.10}\n"
        "    timeout_s: 30\n"
        f"aliases:\n  {MODEL}: [loopback-openai]\n"
    )
    # Limits high enough never to refuse, but counted: key and tenant windows, and a tenant budget.
    env = dict(os.environ, DATABASE_URL=database_url, STRATUS_ENV="local", STRATUS_DATA_DIR=str(work),
               STRATUS_MODELS_FILE=str(catalog), STRATUS_OPENAI_API_KEY="sk-loopback",
               STRATUS_PROVIDER_MODE="hosted", STRATUS_LOG_LEVEL="WARNING", STRATUS_CACHE_ENABLED="true",
               STRATUS_TENANT_REQUESTS_PER_MINUTE="10000000", STRATUS_TENANT_TOKENS_PER_MINUTE="1000000000",
               STRATUS_KEY_REQUESTS_PER_MINUTE="10000000", STRATUS_KEY_TOKENS_PER_MINUTE="1000000000",
               AWS_DEFAULT_REGION="us-east-1", PYTHONPATH=str(ROOT / "shared"))
    # Like for like with LiteLLM (no guardrails there): the compared tenant has every guard rail off; a
    # second tenant on the same server keeps the default rails, to measure what they add.
    key = _create_tenant_and_key(database_url, guard_rails=False)
    guarded_key = _create_tenant_and_key(database_url, guard_rails=True)
    port = free_port()
    server = _spawn("stratus", [sys.executable, "-m", "uvicorn", "stratus.gateway.app:create_app", "--factory",
                                "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--loop", "uvloop",
                                "--http", "httptools", "--log-level", "warning", "--no-access-log",
                                "--no-server-header", "--no-date-header"], env, work)
    try:
        _wait_ready(server, f"http://127.0.0.1:{port}/health", timeout_s=60)
    except PeerUnavailable as err:
        server.stop()
        raise RuntimeError(str(err)) from None
    url = f"http://127.0.0.1:{port}/v1"
    return (server, Target("stratus", url, key, MODEL, pid=server.proc.pid),
            Target("stratus+guard", url, guarded_key, MODEL, pid=server.proc.pid))


def _create_tenant_and_key(database_url: str, *, guard_rails: bool) -> str:
    from stratus.db.connection import connect
    from stratus.gateway import tenancy
    from stratus.gateway.keys import create_key

    tenant = f"bench-gw-{uuid.uuid4().hex[:8]}"
    with connect(database_url) as conn:
        tenancy.create_tenant(conn, tenant, "gateway benchmark")
        tenancy.set_limits(conn, tenant, requests_per_minute=10_000_000, tokens_per_minute=1_000_000_000,
                           budget_usd=1_000_000.0, budget_period="month")
        plaintext, _ = create_key(conn, tenant, name="bench", requests_per_minute=10_000_000,
                                  tokens_per_minute=1_000_000_000)
        conn.commit()
        if not guard_rails:
            from stratus.guard.policy import DEFAULTS, set_policy

            set_policy(conn, tenant, {name: {"action": "off"} for name in DEFAULTS})
    return plaintext


# --- load ----------------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    latencies_s: list[float]
    wall_s: float
    errors: collections.Counter
    cache: collections.Counter  # Stratus's stratus.cache field, when present

    @property
    def rps(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0


def load(target: Target, *, concurrency: int, requests: int, repeat_question: bool = False) -> LoadResult:
    """`requests` chat completions from `concurrency` threads, each with its own keep-alive connection.
    A distinct question per request unless `repeat_question` (so nothing is served from a cache)."""
    import httpx2

    counter = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()
    cache: collections.Counter = collections.Counter()
    url = target.base_url + "/chat/completions"
    headers = {"authorization": f"Bearer {target.api_key}"}
    tag = uuid.uuid4().hex[:6]

    def worker() -> None:
        with httpx2.Client(timeout=60, limits=httpx2.Limits(max_connections=1)) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                question = "How do I rotate my API key?" if repeat_question else f"How do I rotate key {tag}-{i}?"
                body = {"model": target.model, "messages": [{"role": "user", "content": question}],
                        "max_tokens": 32, **target.extra}
                start = time.perf_counter()
                try:
                    r = client.post(url, json=body, headers=headers)
                    elapsed = time.perf_counter() - start
                    data = r.json() if r.status_code == 200 else None
                    ok = data is not None and bool(data["choices"][0]["message"]["content"])
                except (httpx2.HTTPError, ValueError, KeyError, IndexError, TypeError) as err:
                    with lock:
                        errors[type(err).__name__] += 1
                    continue
                with lock:
                    if ok:
                        latencies.append(elapsed)
                        stratus = data.get("stratus") or {}
                        if "cache" in stratus:
                            cache[str(stratus["cache"])] += 1
                    else:
                        errors[f"http {r.status_code}"] += 1

    threads = [threading.Thread(target=worker, name=f"client-{n}") for n in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return LoadResult(latencies, time.perf_counter() - start, errors, cache)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process and its children so far (None without a process)."""
    if pid is None:
        return None
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _overhead(res: LoadResult) -> dict[str, float]:
    over = [max(0.0, x - UPSTREAM_LATENCY_S) for x in res.latencies_s]
    s = summary_ms(over) if over else {"n": 0}
    return {**s, "errors": sum(res.errors.values()), "rps": round(res.rps, 1)}


def measure_overhead(targets: list[Target]) -> dict[str, Any]:
    """ROUNDS rounds; in each, every level for every target in turn. Medians over the rounds."""
    for t in targets:  # connections, lazy imports, the gateways' first database round trips and pools
        load(t, concurrency=16, requests=WARMUP * 2)
    rounds: dict[int, dict[str, list[dict]]] = {c: {t.name: [] for t in targets} for c in LEVELS}
    for r in range(ROUNDS):
        for concurrency, requests in LEVELS.items():
            for t in targets:
                cpu_before = cpu_seconds(t.pid)
                res = load(t, concurrency=concurrency, requests=requests)
                cpu_after = cpu_seconds(t.pid)
                figures = _overhead(res)
                if cpu_before is not None and cpu_after is not None and res.latencies_s:
                    # The server's own CPU per answered request: far less sensitive than latency to what
                    # else runs on a shared machine.
                    figures["cpu_ms_per_request"] = round((cpu_after - cpu_before) * 1000 / len(res.latencies_s), 3)
                rounds[concurrency][t.name].append(figures)
                print(f"round {r + 1} c={concurrency:<2} {t.name:<8} overhead p50 {figures.get('p50_ms')} ms "
                      f"p99 {figures.get('p99_ms')} ms  {figures['rps']} req/s  "
                      f"cpu {figures.get('cpu_ms_per_request')} ms/req  errors {dict(res.errors)}")
    out: dict[str, Any] = {}
    for concurrency, by_target in rounds.items():
        level: dict[str, Any] = {"requests_per_round": LEVELS[concurrency]}
        for name, runs in by_target.items():
            level[name] = {
                "overhead_p50_ms": _median(runs, "p50_ms"), "overhead_p99_ms": _median(runs, "p99_ms"),
                "overhead_mean_ms": _median(runs, "mean_ms"), "requests_per_s": _median(runs, "rps"),
                "errors": sum(x["errors"] for x in runs), "rounds": runs,
            }
            if any("cpu_ms_per_request" in x for x in runs):
                level[name]["cpu_ms_per_request"] = _median(runs, "cpu_ms_per_request")
        if "stratus" in level and "stratus+guard" in level:
            s, g = level["stratus"]["overhead_p50_ms"], level["stratus+guard"]["overhead_p50_ms"]
            level["guard_rails_p50_ms"] = round(g - s, 2) if s is not None and g is not None else None
            s_rps, g_rps = level["stratus"]["requests_per_s"], level["stratus+guard"]["requests_per_s"]
            level["guard_throughput_ratio"] = round(g_rps / s_rps, 3) if s_rps and g_rps is not None else None
        if "stratus" in level and "litellm" in level:
            for p in ("p50", "p99"):
                s, lite = level["stratus"][f"overhead_{p}_ms"], level["litellm"][f"overhead_{p}_ms"]
                level[f"ratio_{p}"] = round(s / lite, 3) if s is not None and lite else None
            s_rps, lite_rps = level["stratus"]["requests_per_s"], level["litellm"]["requests_per_s"]
            level["throughput_ratio"] = round(s_rps / lite_rps, 3) if s_rps is not None and lite_rps else None
            s_cpu, lite_cpu = level["stratus"].get("cpu_ms_per_request"), level["litellm"].get("cpu_ms_per_request")
            level["cpu_ratio"] = round(s_cpu / lite_cpu, 3) if s_cpu is not None and lite_cpu else None
        out[f"concurrency_{concurrency}"] = level
    return out


def _median(runs: list[dict], key: str) -> float | None:
    values = [x[key] for x in runs if key in x]
    return round(statistics.median(values), 2) if values else None


def measure_cached(target: Target) -> dict[str, Any]:
    """Requests/s of one repeated question with the cache on (the first request fills it)."""
    cached = Target(target.name, target.base_url, target.api_key, target.model,
                    extra={"stratus": {"cache": True}})  # plain chat consults the cache when asked
    load(cached, concurrency=1, requests=1, repeat_question=True)
    load(cached, concurrency=16, requests=WARMUP * 2, repeat_question=True)
    res = load(cached, concurrency=16, requests=CACHED_REQUESTS, repeat_question=True)
    return {"concurrency": 16, "requests": CACHED_REQUESTS, "requests_per_s": round(res.rps, 1),
            "latency": summary_ms(res.latencies_s) if res.latencies_s else None,
            "cache_field_counts": dict(res.cache), "errors": dict(res.errors)}


def _targets_met(result: dict[str, Any]) -> dict[str, Any]:
    met: dict[str, Any] = {}
    for level in ("concurrency_1", "concurrency_16"):
        for p in ("p50", "p99"):
            ratio = result.get("overhead", {}).get(level, {}).get(f"ratio_{p}")
            met[f"{level}_{p}_ratio_le_0.5"] = None if ratio is None else ratio <= 0.5
    ratio = result.get("overhead", {}).get("concurrency_16", {}).get("throughput_ratio")
    met["concurrency_16_throughput_ratio_ge_2"] = None if ratio is None else ratio >= 2
    ratio = result.get("overhead", {}).get("concurrency_16", {}).get("guard_throughput_ratio")
    met["concurrency_16_guard_throughput_ratio_ge_0.7"] = None if ratio is None else ratio >= 0.7
    return met


def run(database_url: str, work: Path) -> dict[str, Any]:
    servers: list[Server] = []
    result: dict[str, Any] = {
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],  # others' work on a shared machine
        "upstream_latency_ms": UPSTREAM_LATENCY_S * 1000, "rounds": ROUNDS, "client": "httpx2, one keep-alive "
        "connection per thread; non-streamed chat completion, distinct short question, max_tokens 32",
        "cores_shared_by_client_gateways_upstream_and_postgres": os.cpu_count(),
        "stratus": "uvicorn 1 worker (uvloop, httptools); API key auth, key + tenant rate limits (high), tenant "
                   "budget (large), traces on; cache off per request (stratus.cache=false); guard rails off "
                   "(LiteLLM runs none)",
        "stratus+guard": "the same server and settings, a tenant on the default guard policy (input: injection, "
                         "PII; output: canary, toxicity, PII)",
        "litellm": f"{LITELLM}, 1 worker, master-key auth, no database (its per-key limits, budgets and spend "
                   "logs need one)",
    }
    try:
        upstream, upstream_url = start_upstream(work)
        servers.append(upstream)
        direct = Target("direct", upstream_url, "sk-loopback", UPSTREAM_MODEL)
        stratus_server, stratus, guarded = start_stratus(upstream_url, database_url, work)
        servers.append(stratus_server)
        stratus.extra = guarded.extra = {"stratus": {"cache": False}}
        targets = [direct, stratus, guarded]
        try:
            if PEER == "none":
                raise PeerUnavailable("BENCH_GATEWAY_PEER=none: rails on/off only")
            lite_server, lite = start_litellm(upstream_url, work)
            servers.append(lite_server)
            targets.append(lite)
        except PeerUnavailable as err:
            result["litellm_skipped"] = str(err)
            print(f"LiteLLM skipped: {err}")
        result["overhead"] = measure_overhead(targets)
        result["cached_throughput"] = measure_cached(stratus)
    finally:
        for s in reversed(servers):
            s.stop()
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["targets_met"] = _targets_met(result)
    return result


def main(url: str | None = None) -> dict[str, Any]:
    work = ROOT / ".stratus" / "bench-gateway"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with database(url, work / "pg") as db_url:
        result = run(db_url, work)
    # A run without the peer measures the rails only: it must not replace the recorded peer comparison.
    record("gateway_overhead" if PEER != "none" else "gateway_guard_rails", result)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2, default=str))
