"""One function's execution environment: a process running the real Runtime Interface Client.

The process sees only what Lambda gives a python3.12 function: `python -S` (no site-packages), sys.path
= the function's folder, its layers' python/ folders, and the runtime's boto3 + RIC; the environment
from the template plus Lambda's reserved variables. The template's Timeout is the invocation's
deadline (Lambda-Runtime-Deadline-Ms); an invocation that passes it has its environment killed, as
Lambda does, and the next one starts cold.

A function that names the Lambda Web Adapter as its exec wrapper (the gateway) starts its handler
script (run.sh, as the adapter's /opt/bootstrap does) instead of the RIC, on a port of its own, and the
tier's WebAdapter plays the adapter's part between the Runtime API and the app.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stratus_tools.local.ports import free_port
from stratus_tools.local.template import WEB_ADAPTER_WRAPPER
from tests.lambda_contract.environment import FunctionSpec, lambda_variables
from tests.lambda_contract.runtime_api import Invocation, RuntimeApi
from tests.lambda_contract.web_adapter import WebAdapter


class FunctionTimedOut(AssertionError):
    pass


@dataclass
class ColdStart:
    init_ms: float  # process start -> its first /next (Lambda's "Init Duration")


class FunctionProcess:
    def __init__(self, spec: FunctionSpec, layer_paths: list[Path], runtime: Path, *, region: str,
                 xray_daemon: str, logs: Path) -> None:
        self.spec = spec
        self.layer_paths = layer_paths
        self.runtime = runtime
        self.region = region
        self.xray_daemon = xray_daemon
        self.logs = logs
        self.api = RuntimeApi().start()
        self.proc: subprocess.Popen[bytes] | None = None
        self.cold_starts: list[ColdStart] = []
        self._started_at = 0.0
        self._cold = False  # the next invocation is the environment's first
        self._log_file: Any = None
        self.adapter: WebAdapter | None = None
        self.web_port = free_port() if self.behind_web_adapter else None

    @property
    def behind_web_adapter(self) -> bool:
        return self.spec.environment.get("AWS_LAMBDA_EXEC_WRAPPER") == WEB_ADAPTER_WRAPPER

    @property
    def sys_path(self) -> list[str]:
        return [str(self.spec.code_dir), *map(str, self.layer_paths), str(self.runtime)]

    def environment(self) -> dict[str, str]:
        env = {**self.spec.environment,
               **lambda_variables(self.spec, region=self.region, runtime_api=self.api.address,
                                  xray_daemon=self.xray_daemon)}
        env["PYTHONPATH"] = os.pathsep.join(self.sys_path)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # Lambda's /opt is read-only
        if self.behind_web_adapter:
            env["AWS_LWA_PORT"] = str(self.web_port)  # one machine, many environments: a port each
            env["PATH"] = f"{_python_shim(self.runtime.parent)}:{env['PATH']}"
        return env

    def start(self) -> None:
        self.api.reset()
        self.logs.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.logs.open("ab")
        self._started_at = time.monotonic()
        self._cold = True
        if self.behind_web_adapter:  # /opt/bootstrap execs the handler script; the adapter polls the API
            command = [str(self.spec.code_dir / self.spec.handler)]
            env = self.environment()
            self.adapter = WebAdapter(self.api.address, port=int(env["AWS_LWA_PORT"]),
                                      readiness_path=env.get("AWS_LWA_READINESS_CHECK_PATH", "/"),
                                      function={"function_name": env["AWS_LAMBDA_FUNCTION_NAME"],
                                                "memory": int(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]),
                                                "version": env["AWS_LAMBDA_FUNCTION_VERSION"],
                                                "log_group": env["AWS_LAMBDA_LOG_GROUP_NAME"],
                                                "log_stream": env["AWS_LAMBDA_LOG_STREAM_NAME"]},
                                      streaming=env.get("AWS_LWA_INVOKE_MODE") == "response_stream").start()
        else:
            command = [sys.executable, "-S", "-m", "awslambdaric", self.spec.handler]
        self.proc = subprocess.Popen(
            command, cwd=self.spec.code_dir, env=self.environment(), stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        if self.adapter is not None:
            self.api.reset()  # releases the adapter's waiting /next
            self.adapter.stop()
            self.adapter = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        self.stop()
        self.api.stop()

    def invoke(self, event: Any, *, trace_header: str | None = None, timeout_s: float | None = None,
               on_chunk: Any = None) -> Invocation:
        """Runs one invocation; the result (or error) is on the returned Invocation. `on_chunk` receives a
        streamed response's parts as they arrive (False: the caller left)."""
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self.start()
        timeout_s = self.spec.timeout_s if timeout_s is None else timeout_s
        invocation = Invocation(event=event, function_arn=self._arn,
                                deadline_ms=int((time.time() + timeout_s) * 1000), on_chunk=on_chunk)
        if trace_header:
            invocation.trace_id = trace_header
        self.api.submit(invocation)
        deadline = time.monotonic() + timeout_s
        cold, self._cold = self._cold, False
        while not invocation.done.wait(0.05):
            assert self.proc is not None
            if self.api.init_error is not None or self.proc.poll() is not None:
                # An after-restore hook's failure ends the process too (SnapStart), having said why
                restore = self.api.restore_error
                invocation.error_type = self.api.init_error_type or (
                    "Runtime.AfterRestoreError" if restore else "Runtime.ExitError")
                invocation.body = json.dumps(self.api.init_error or restore or {
                    "errorMessage": f"the runtime exited with status {self.proc.poll()}"}).encode()
                self.stop()
                return invocation
            if time.monotonic() > deadline:
                self.stop()  # Lambda resets the environment: the next invocation starts cold
                invocation.error_type = "Sandbox.Timedout"
                invocation.body = json.dumps({"errorMessage": f"Task timed out after {timeout_s:.2f} seconds"}
                                             ).encode()
                return invocation
        if cold and self.api.first_next_at is not None:
            self.cold_starts.append(ColdStart(round((self.api.first_next_at - self._started_at) * 1000, 1)))
        return invocation

    @property
    def _arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:123456789012:function:{self.spec.name}"

    def log_text(self) -> str:
        return self.logs.read_text(errors="replace") if self.logs.exists() else ""


class ProcessBackedFunction:
    """Stands where the local stack's in-process function stood: moto's Lambda hook (Step Functions tasks,
    SQS event sources, direct invokes) now reaches the function's own process."""

    def __init__(self, process: FunctionProcess) -> None:
        self.process = process
        self.name = process.spec.name

    def invoke(self, event: Any, *, region: str, account_id: str,
               trace_header: str | None = None) -> tuple[str, bool, str]:
        try:  # the caller's X-Ray header (a traced workflow's task, an SQS message's AWSTraceHeader)
            invocation = self.process.invoke(event, trace_header=trace_header)
        except Exception as err:  # the harness itself failed: report it as the function's error
            return json.dumps({"errorMessage": str(err), "errorType": type(err).__name__,
                               "stackTrace": traceback.format_exception(err)}), True, ""
        if invocation.error_type:
            return invocation.body.decode() or "{}", True, ""
        return invocation.body.decode() or "null", False, ""


def _python_shim(folder: Path) -> Path:
    """A `python` first on PATH that runs this interpreter as Lambda's runs: no site-packages (`-S`), so
    run.sh's `python -m uvicorn` finds only what the function's layers and the runtime provide."""
    shim = folder / "bin"
    shim.mkdir(parents=True, exist_ok=True)
    script = shim / "python"
    text = f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n'
    if not script.exists() or script.read_text() != text:  # whole and executable, or the old one: another
        tmp = shim / f"python.{os.getpid()}.tmp"            # test process may run it at this moment
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(script)
    return shim
