"""Cold start of each template function through the real Lambda Runtime Interface Client.

    python -m bench.run cold_start
    python -m bench.cold_start [--runs N] [--functions GatewayFunction,RetrieveFunction] [--quick] [--out PATH]

Each function runs as the Lambda-contract tier runs it (tests/lambda_contract): its own process under
`awslambdaric`, `python -S`, only its layers (the deploy's recipes built for this machine, with the
bytecode they ship for what the inits and first invocations import, layers/bytecode.txt; nothing else is
compiled ahead, and Lambda's /opt is read-only) and the runtime's boto3 on sys.path, the template's
environment for the dev stage, tracing on, PgBouncer in front of the embedded PostgreSQL as RDS Proxy.
Per function, `runs` cold starts (the process killed and started again between them) after one untimed
warm-up (the OS's file cache, as any later cold start on a warm host finds it):

- `init_ms`: process start -> its first GET /runtime/invocation/next (Lambda's "Init Duration");
- `first_invocation_ms`: that /next -> the response of the environment's first invocation, for a cheap
  representative event (events/*.json where one exists); an error is recorded, not raised.

Peers, in the same run, interleaved with the RIC runs, each the handler module imported by
`python -c 'import app'` in the function's folder with its environment, timed from spawn to the end of the
import (no RIC):

- `venv_import_ms`: on the full virtualenv (site-packages, no layer isolation), bytecode cached;
- `layers_import_ms`: `python -S` on exactly the RIC process's sys.path, the layers' bytecode as they
  ship it, none written: init_ms minus this is what the RIC itself and its start add;
- `layers_import_pyc_ms`: the same with every layer module's bytecode cached: layers_import_ms minus this
  is what a module missing from layers/bytecode.txt still costs;
- `layers_import_source_ms`: the same with no bytecode at all, every module compiled from source (as the
  layers shipped before they carried any): this minus layers_import_ms is what the shipped bytecode saves.

BENCH_COLD_RUNS (default 7) sets the runs. `--quick` is one run of two functions without the warm-up, for
the test that keeps this script working; `--out` writes there instead of bench/results/cold_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, record
from stratus_tools.evals.retrieval import percentile
from tests.lambda_contract.environment import build_layers, build_runtime, layer_folder
from tests.lambda_contract.process import FunctionProcess
from tests.lambda_contract.stack import CACHE, FUNCTIONS, deploy_migrations, function_processes

RUNS = int(os.environ.get("BENCH_COLD_RUNS", "7"))
QUICK_FUNCTIONS = ("RetrieveFunction", "GatewayFunction")
LAMBDA_LIMIT_MIB = 250  # unzipped, a function and all its layers (layers/lib.sh)

# The peers: the handler module imported without the RIC; prints when the import is done.
PEER = "import app, sys; sys.stdout.write('imported'); sys.stdout.flush()"
PEERS = ("venv_import_ms", "layers_import_ms", "layers_import_pyc_ms", "layers_import_source_ms")


def _event_file(name: str, **replace: str) -> Any:
    text = (ROOT / "events" / name).read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return json.loads(text)


def events(stack: Any, response_url: str) -> dict[str, tuple[str, Callable[[], Any]]]:
    """Function -> (what the event is, a factory for a fresh one): cheap, representative first invocations."""
    from tests.integration.gateway_support import tenant_with_key

    tenant, key = tenant_with_key(stack.database_url, "bench-cold")

    def chat() -> dict[str, Any]:
        return {**_event_file("generate_chat.json"), "tenant_id": tenant, "request_id": f"req-{uuid.uuid4().hex}"}

    scheduled = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
                 "time": "2026-12-06T00:00:00Z", "region": stack.region, "resources": [], "detail": {}}
    return {
        "GatewayFunction": ("gateway_models.json (GET /v1/models/rag/fast, a real key)",
                            lambda: _event_file("gateway_models.json", **{"sk-stratus-REPLACE_WITH_A_KEY": key})),
        "RetrieveFunction": ("retrieve.json (hybrid, empty tenant)",
                             lambda: {**_event_file("retrieve.json"), "tenant_id": tenant}),
        "GenerateFunction": ("generate_chat.json (offline provider)", chat),
        "GuardFunction": ("input stage of generate_chat.json", lambda: {"stage": "input", "state": chat()}),
        "IngestFunction": ("ingest_test_event.json (s3:TestEvent, skipped)",
                           lambda: _event_file("ingest_test_event.json")),
        "EvalSamplerFunction": ("scheduled event (no traces to sample)",
                                lambda: {**scheduled, "id": str(uuid.uuid4())}),
        "GuardMultilingualFunction": ("guard_multilingual.json (three texts, the models loaded at init)",
                                      lambda: _event_file("guard_multilingual.json")),
        "MigrateFunction": ("migrate_create.json (nothing left to apply)",
                            lambda: {**_event_file("migrate_create.json"), "ResponseURL": response_url}),
    }


def stats(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    return {"median": round(statistics.median(samples), 1), "p90": round(percentile(samples, 90), 1),
            "min": round(min(samples), 1), "max": round(max(samples), 1), "n": len(samples),
            "samples": [round(s, 1) for s in samples]}


def cold_invocation(process: FunctionProcess, event: Any) -> dict[str, Any]:
    """Kills the environment, starts it again and runs its first invocation."""
    process.stop()
    starts = len(process.cold_starts)
    invocation = process.invoke(event)
    answered = time.monotonic()
    first_next = process.api.first_next_at
    out: dict[str, Any] = {"init_ms": process.cold_starts[-1].init_ms if len(process.cold_starts) > starts else None,
                           "first_invocation_ms": None if first_next is None else (answered - first_next) * 1000,
                           "error": None}
    if invocation.error_type:
        try:
            message = str((invocation.payload or {}).get("errorMessage", ""))
        except ValueError:
            message = invocation.body[:300].decode(errors="replace")
        out["error"] = f"{invocation.error_type}: {message[:300]}"
    process.stop()
    return out


def peer_import(process: FunctionProcess, *, isolated: bool, pycache: Path | None, write: bool = True) -> float:
    """Milliseconds from spawn to the end of `import app`, in the function's environment: `isolated`, on the
    RIC process's sys.path under `python -S`, else on the full virtualenv; bytecode read from `pycache` when
    given (a prefix: the layers' own bytecode is then not read) and written there unless not `write` (an empty
    prefix never written to: everything compiled from source), else only the bytecode the layers ship read
    and none written."""
    env = process.environment()  # PYTHONPATH = the RIC process's sys.path, no bytecode written
    argv = [sys.executable, "-S", "-c", PEER]
    if not isolated:
        env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        argv.remove("-S")
    if pycache is not None:
        if write:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=process.spec.code_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    marker = proc.stdout.read(len("imported"))
    elapsed = (time.perf_counter() - started) * 1000
    _, err = proc.communicate(timeout=120)
    if marker != b"imported":
        raise RuntimeError(f"{process.spec.logical_id}: `import app` failed: {err.decode(errors='replace')[-1500:]}")
    return elapsed


def _bytecode_outside_layers(cached: Path, out: Path, layers: list[Path]) -> None:
    """`out`: a copy of the bytecode prefix `cached` without the layers' modules, so the import that reads it
    compiles only what the layers hold (the standard library's and the runtime's bytecode, which Lambda's
    runtime has, is read as in the other peers)."""
    if out.exists():
        return
    skipped = {cached / Path(os.path.abspath(layer)).relative_to("/") for layer in layers}
    shutil.copytree(cached, out, ignore=lambda folder, names: [n for n in names if Path(folder) / n in skipped])


def measure(process: FunctionProcess, what: str, event: Callable[[], Any], *, runs: int, warm_up: bool,
            peer: bool, work: Path) -> dict[str, Any]:
    pycache = work / "pycache" / process.spec.logical_id  # the peers' bytecode, filled by the first run
    variants = {"venv_import_ms": {"isolated": False, "pycache": pycache / "venv"},
                "layers_import_ms": {"isolated": True, "pycache": None},
                "layers_import_pyc_ms": {"isolated": True, "pycache": pycache / "layers"},
                "layers_import_source_ms": {"isolated": True, "pycache": pycache / "none", "write": False}}
    init, first, errors = [], [], []
    peers: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(-1 if warm_up else 0, runs):
        run = cold_invocation(process, event())
        timed = {}
        for name, kw in variants.items() if peer else ():
            if name == "layers_import_source_ms":
                _bytecode_outside_layers(pycache / "layers", pycache / "none", process.layer_paths)
            timed[name] = peer_import(process, **kw)
        if i < 0:
            continue
        if run["init_ms"] is not None:
            init.append(run["init_ms"])
        if run["error"]:
            errors.append(run["error"])
        elif run["first_invocation_ms"] is not None:
            first.append(run["first_invocation_ms"])
        for name, ms in timed.items():
            peers[name].append(ms)
    result: dict[str, Any] = {
        "init_ms": stats(init),
        "first_invocation": {"event": what, "ms": stats(first), "errors": errors},
    }
    if peer:
        result["peer"] = {name: stats(samples) for name, samples in peers.items()}
        if init:
            result["peer"]["ratio_init_to_venv_import"] = round(
                statistics.median(init) / statistics.median(peers["venv_import_ms"]), 2)
    return result


def _mib(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20, 1)


def _awslambdaric_version(runtime: Path) -> str:
    found = [d.version for d in metadata.distributions(path=[str(runtime)]) if d.metadata["Name"] == "awslambdaric"]
    return found[0] if found else "unknown"


@contextmanager
def contract_stack(work: Path, builds: dict[str, Any], names: tuple[str, ...]) -> Iterator[tuple[Any, dict]]:
    """The local stack for the dev stage, PgBouncer as the proxy, a loopback X-Ray daemon, and one RIC
    process per function, set up as tests/lambda_contract/conftest.py sets up its own, with the deploy step
    run first (MigrateFunction's Create: migrations and the prompt labels). No pollers or schedules: nothing
    may invoke a function behind the benchmark's back."""
    from stratus.config import load_settings
    from stratus_tools.local.pgbouncer import pgbouncer
    from stratus_tools.local.stack import LocalStack
    from stratus_tools.local.template import load_template
    from tests.lambda_contract.xray import XRayCollector

    template = load_template(ROOT / "template.yaml")
    settings = load_settings(data_dir=str(work / "stack"))
    xray = XRayCollector().start()
    processes: dict[str, FunctionProcess] = {}
    try:
        with LocalStack(settings, parameters={"Stage": "dev"}, start_pollers=False) as stack, \
                pgbouncer(stack.database_url, pool_size=4) as pooler:
            try:
                processes.update(function_processes(stack, pooler, template, builds,
                                                    tuple(dict.fromkeys(("MigrateFunction", *names))),
                                                    xray_daemon=xray.address, logs=work / "logs"))
                deploy_migrations(processes["MigrateFunction"])
                processes["MigrateFunction"].stop()
                yield stack, {name: processes[name] for name in names}
            finally:
                for process in processes.values():
                    process.close()
    finally:
        xray.stop()


def private_layers(work: Path) -> dict[str, Path]:
    """The contract tier's layer builds (built or refreshed there first), hard-linked into `work`: another
    session's later refresh of the shared builds (`--code-only` deletes the stratus package and copies it
    anew) cannot change the layers under a running benchmark."""
    shared = build_layers(CACHE / "layers")
    for folder in shared.values():
        subprocess.run(["cp", "-al", str(folder), str(work / "layers" / folder.name)], check=True)
    return build_layers(work / "layers")  # the copies carry the shared builds' library stamp: nothing to redo


def run(*, runs: int, names: tuple[str, ...], warm_up: bool = True, peer: bool = True) -> dict[str, Any]:
    from stratus_tools.local.template import load_template
    from tests.integration.cfn_support import ResponseUrl

    template = load_template(ROOT / "template.yaml")
    work = ROOT / ".stratus" / f"bench-cold-start-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "layers").mkdir(parents=True)
    builds = {"layers": private_layers(work), "runtime": build_runtime(CACHE)}
    layer_ids = sorted({lid for lid, res in template["Resources"].items()
                        if res.get("Type") in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")})
    layer_mib = {lid: _mib(layer_folder(lid, template, builds["layers"])) for lid in layer_ids}
    load_before = os.getloadavg()
    response_url = ResponseUrl()
    functions: dict[str, Any] = {}
    try:
        with contract_stack(work, builds, names) as (stack, processes):
            samples = events(stack, response_url.url)
            for logical_id, process in processes.items():
                what, event = samples[logical_id]
                code_mib = _mib(process.spec.code_dir)
                package = round(code_mib + sum(layer_mib[lid] for lid in process.spec.layers), 1)
                figures = {"memory_mb": process.spec.memory_mb, "layers": process.spec.layers,
                           "code_mib": code_mib, "package_mib": package,
                           "headroom_mib": round(LAMBDA_LIMIT_MIB - package, 1),
                           **measure(process, what, event, runs=runs, warm_up=warm_up, peer=peer, work=work)}
                functions[logical_id] = figures
                peer_note = ""
                if peer and figures["peer"]["venv_import_ms"]["n"]:
                    peer_note = "  import: " + ", ".join(
                        f"{name.removesuffix('_ms')} {figures['peer'][name]['median']:.0f}" for name in PEERS)
                first = figures["first_invocation"]
                print(f"cold start {logical_id:<20} init {figures['init_ms'].get('median', float('nan')):7.1f} ms"
                      f"  first invocation {first['ms'].get('median', float('nan')):7.1f} ms"
                      f"{'  ERRORS ' + str(len(first['errors'])) if first['errors'] else ''}{peer_note}")
    finally:
        response_url.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "runs": runs, "warm_up": warm_up, "stage": "dev",
        "runtime": {"python": sys.version.split()[0], "awslambdaric": _awslambdaric_version(builds["runtime"]),
                    "target": "python3.12 arm64 on Lambda; here this interpreter and native (x86_64) layer builds"},
        "load_average_before_after": [round(x, 2) for x in (*load_before[:1], *os.getloadavg()[:1])],
        "layers_mib": layer_mib,
        "sizes": "MiB of files in this machine's native layer builds (package_mib: the function's layers and code, "
                 f"headroom_mib: to Lambda's {LAMBDA_LIMIT_MIB} MiB); the deploy's arm64 builds differ and are "
                 "checked by layers/lib.sh",
        "method": "init_ms: process start -> first /next under awslambdaric, or for the gateway under the "
                  "tier's Web Adapter after run.sh's uvicorn answers /health (Lambda's Init Duration); "
                  "first_invocation_ms: that /next -> the first invocation's response; peers: `import app`, "
                  "spawn -> import done, on the full venv with cached bytecode (venv_import_ms), and on the RIC "
                  "process's sys.path with the layers' bytecode as shipped (layers_import_ms), with every "
                  "module's bytecode cached (layers_import_pyc_ms) and with none (layers_import_source_ms)",
        "functions": functions,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help=f"cold starts per function (default {RUNS})")
    parser.add_argument("--functions", default="", help="comma-separated logical ids (default: all)")
    parser.add_argument("--quick", action="store_true", help="one run of two functions, no warm-up")
    parser.add_argument("--no-peer", action="store_true", help="skip the `import app` peer")
    parser.add_argument("--out", type=Path, default=None, help="write here instead of bench/results/")
    args = parser.parse_args([] if argv is None else argv)
    names = tuple(n for n in args.functions.split(",") if n) or (QUICK_FUNCTIONS if args.quick else FUNCTIONS)
    unknown = set(names) - set(FUNCTIONS)
    if unknown:
        parser.error(f"not template functions: {', '.join(sorted(unknown))}")
    runs = args.runs or (1 if args.quick else RUNS)
    result = run(runs=runs, names=names, warm_up=not args.quick, peer=not args.no_peer)
    if args.out is None:
        record("cold_start", result)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"benchmark": "cold_start", "machine": machine(), **result}, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
