"""What Lambda gives a function, rebuilt from the repository: its layers, its runtime, its environment.

- Layers: the same build recipes and trimming the deploy uses (layers/<name>/build.sh), built for this
  machine (`--native`, as layers/*/check.sh do) and cached by the hash of their recipe; the library in
  CommonLayer is refreshed from shared/stratus (`--code-only`) whenever it changed.
- Runtime: what the python3.12 runtime puts on sys.path besides the layers (boto3 and its dependencies)
  plus the Runtime Interface Client, pinned from requirements.lock.
- Environment: template.yaml's Globals and the function's own variables, resolved against the local
  stack's resources for a stage, plus the variables Lambda itself sets (including those its
  LoggingConfig implies: AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_LOG_LEVEL). Values the template points at
  resources that are not emulated (the database secret or proxy) must be overridden explicitly.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratus_tools.local.cfn import NO_VALUE, Unresolvable
from stratus_tools.local.template import function_properties
from stratus_tools.locks import exclusive

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ROOT / "layers"
# What the Lambda runtime provides (layers/lib.sh RUNTIME_PROVIDED) and the RIC with its dependencies.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3",
                    "awslambdaric", "simplejson", "snapshot-restore-py")


def _pins(names: tuple[str, ...]) -> list[str]:
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    pins = []
    for name in names:
        pattern = re.compile(rf"^{re.sub(r'[-_]', '[-_]', name)}==", re.I)
        found = [line for line in lock if pattern.match(line)]
        if not found:
            raise LookupError(f"{name} is not pinned in requirements.lock")
        pins.append(found[0])
    return pins


def _digest(paths: list[Path], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def build_layers(cache: Path, names: tuple[str, ...] = ("common", "guard", "ingest", "multilingual"),
                 ) -> dict[str, Path]:
    """Layer name -> its build folder (holding python/), native builds cached across runs. Test processes
    running side by side (pytest -n) share the cache: one builds while the others wait, and the library is
    copied again only when it changed, so never during a run that leaves shared/stratus alone (an edit made
    while a run goes on replaces the package under the other process's functions)."""
    # Built for this interpreter, its bytecode too (layers/lib.sh, compile_cold_path).
    env = {**os.environ, "PIP": f"{sys.executable} -m pip", "LAYER_PYTHON": sys.executable}
    shared = [LAYERS / "lib.sh", LAYERS / "trim.sh", LAYERS / "bytecode.txt"]
    out = {}
    library = _library_digest()
    with exclusive(cache / ".build.lock"):
        for name in names:
            recipe = sorted(p for p in (LAYERS / name).iterdir() if p.is_file())
            folder = cache / f"{name}-{_digest(shared + recipe, sys.version)}"
            if not (folder / "python").is_dir():  # built aside and renamed: a killed build leaves no layer
                tmp = folder.with_suffix(".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.rmtree(folder, ignore_errors=True)
                subprocess.run(["bash", str(LAYERS / name / "build.sh"), "--native"], check=True,
                               env={**env, "LAYER_BUILD_DIR": str(tmp)}, stdout=subprocess.DEVNULL)
                _stamp_library(tmp, library)
                tmp.rename(folder)
            elif name == "common" and _stamped_library(folder) != library:  # it changes more often than the rest
                subprocess.run(["bash", str(LAYERS / name / "build.sh"), "--code-only"], check=True,
                               env={**env, "LAYER_BUILD_DIR": str(folder)}, stdout=subprocess.DEVNULL)
                _stamp_library(folder, library)
            out[name] = folder
    return out


def _library_digest() -> str:
    """What CommonLayer's `--code-only` copies: shared/stratus (no bytecode), the migrations, the prompts."""
    files = [p for p in (ROOT / "shared" / "stratus").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    files += list((ROOT / "infra" / "db" / "migrations").glob("*.sql")) + list((ROOT / "prompts").glob("*/*.yaml"))
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


LIBRARY_STAMP = "library.sha256"  # beside python/: the digest of the library a build holds


def _stamp_library(folder: Path, digest: str) -> None:
    """Records `digest` as the build's library (a new file: a hard-linked copy keeps its own stamp)."""
    tmp = folder / f"{LIBRARY_STAMP}.tmp"
    tmp.write_text(digest)
    tmp.replace(folder / LIBRARY_STAMP)


def _stamped_library(folder: Path) -> str | None:
    stamp = folder / LIBRARY_STAMP
    return stamp.read_text() if stamp.is_file() else None


def build_runtime(cache: Path) -> Path:
    """boto3 (as the runtime ships it) and awslambdaric, installed for this interpreter."""
    pins = _pins(RUNTIME_PACKAGES)
    folder = cache / f"runtime-{_digest([], ' '.join(pins) + sys.version)}"
    with exclusive(cache / ".build.lock"):
        if not folder.is_dir():
            tmp = folder.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)  # what a killed build left
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "--no-deps", "--only-binary=:all:", "--target", str(tmp), *pins], check=True)
            tmp.rename(folder)
    return folder


@dataclass
class FunctionSpec:
    """A template function as Lambda would run it."""

    logical_id: str
    name: str
    code_dir: Path
    handler: str
    memory_mb: int
    timeout_s: float
    layers: list[str]  # logical ids, in order
    environment: dict[str, str]
    tracing: bool
    log_format: str = "Text"  # LoggingConfig.LogFormat
    application_log_level: str | None = None  # LoggingConfig.ApplicationLogLevel (JSON format only)
    snap_start: bool = False  # SnapStart.ApplyOn PublishedVersions: callers reach a version through its alias


def layer_folder(logical_id: str, template: dict[str, Any], builds: dict[str, Path]) -> Path:
    """A LayerVersion's ContentUri (layers/<name>/build/) mapped to this machine's build of <name>."""
    uri = template["Resources"][logical_id]["Properties"]["ContentUri"]
    name = Path(uri).parts[1]
    return builds[name] / "python"


def function_spec(template: dict[str, Any], logical_id: str, resolver: Any, name: str,
                  overrides: dict[str, str], unset: frozenset[str] = frozenset()) -> FunctionSpec:
    """The function's configuration from the template (Globals merged), its variables resolved, `overrides`
    replacing (or adding) variables and the `unset` ones left out."""
    props = function_properties(template, logical_id)
    variables = dict((props.get("Environment") or {}).get("Variables") or {})
    environment: dict[str, str] = {}
    unresolved = []
    for key, value in variables.items():
        if key in overrides or key in unset:
            continue
        try:
            resolved = resolver.resolve(value)
        except Unresolvable as err:
            unresolved.append(f"{key} ({err})")
            continue
        if resolved is not NO_VALUE:  # an !If ... AWS::NoValue: Lambda gets no such variable
            environment[key] = str(resolved)
    if unresolved:
        raise AssertionError(f"{logical_id}: variables that point at resources not emulated here must be "
                             f"overridden by the contract tier: {', '.join(unresolved)}")
    environment.update(overrides)
    layers = [ref["Ref"] for ref in props.get("Layers") or [] if isinstance(ref, dict) and "Ref" in ref]
    logging = props.get("LoggingConfig") or {}
    level = logging.get("ApplicationLogLevel")
    return FunctionSpec(
        logical_id=logical_id, name=name, code_dir=(ROOT / str(props["CodeUri"])).resolve(),
        handler=str(props["Handler"]), memory_mb=int(resolver.resolve(props.get("MemorySize", 128))),
        timeout_s=float(resolver.resolve(props.get("Timeout", 3))), layers=layers, environment=environment,
        tracing=resolver.resolve(props.get("Tracing")) == "Active",
        log_format=str(_resolve(template, resolver, logging.get("LogFormat", "Text"))),
        application_log_level=None if level is None else str(_resolve(template, resolver, level)),
        snap_start=(props.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions",
    )


def _resolve(template: dict[str, Any], resolver: Any, value: Any) -> Any:
    """`resolver.resolve`, plus a top-level Fn::FindInMap over the template's Mappings (the local stack's
    resolver has no FindInMap; the LoggingConfig reads its level from one)."""
    if isinstance(value, dict) and set(value) == {"Fn::FindInMap"}:
        name, top, second = (resolver.resolve(v) for v in value["Fn::FindInMap"])
        return template["Mappings"][name][top][second]
    return resolver.resolve(value)


def lambda_variables(spec: FunctionSpec, *, region: str, runtime_api: str, xray_daemon: str) -> dict[str, str]:
    """The reserved variables Lambda sets in every python3.12 environment, and the log variables it sets
    when the function's LoggingConfig has LogFormat JSON (the RIC and Powertools read them)."""
    # A SnapStart function runs as its published version (the alias's), initialised for a snapshot.
    version = "1" if spec.snap_start else "$LATEST"
    variables = {
        "AWS_LAMBDA_FUNCTION_NAME": spec.name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": version, "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"2026/12/06/[{version}]contract", "AWS_LAMBDA_RUNTIME_API": runtime_api,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start" if spec.snap_start else "on-demand",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12", "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
        "LAMBDA_TASK_ROOT": str(spec.code_dir), "LAMBDA_RUNTIME_DIR": "/var/runtime", "_HANDLER": spec.handler,
        "TZ": ":UTC", "LANG": "en_US.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    if spec.log_format == "JSON":
        variables["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        if spec.application_log_level:
            variables["AWS_LAMBDA_LOG_LEVEL"] = spec.application_log_level
    if spec.tracing:
        variables |= {"AWS_XRAY_DAEMON_ADDRESS": xray_daemon, "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
                      "_AWS_XRAY_DAEMON_ADDRESS": xray_daemon.split(":")[0],
                      "_AWS_XRAY_DAEMON_PORT": xray_daemon.split(":")[1]}
    return variables
