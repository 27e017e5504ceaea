"""StartSyncExecution for moto's Step Functions, which implements only the asynchronous StartExecution.

On AWS the gateway runs the Express query workflow with StartSyncExecution; locally the same call goes
to moto, so the local stack teaches moto that action: start the execution (moto runs the ASL in a
thread), wait for it to end, and answer with StartSyncExecution's response shape. The state machine's
top-level TimeoutSeconds is honoured as AWS does (status TIMED_OUT, error States.Timeout), which moto's
executor does not do by itself.
"""

from __future__ import annotations

import json
import time
from typing import Any

_POLL_S = 0.005


def install() -> None:
    from moto.stepfunctions.responses import StepFunctionResponse

    if getattr(StepFunctionResponse, "start_sync_execution", None) is _start_sync_execution:
        return
    StepFunctionResponse.start_sync_execution = _start_sync_execution  # type: ignore[attr-defined]


def _start_sync_execution(self: Any) -> Any:
    from moto.core.responses import ActionResult

    backend = self.stepfunction_backend
    arn = self._get_param("stateMachineArn")
    execution = backend.start_execution(arn, self._get_param("name"), self._get_param("input", if_none="{}"))
    timeout_s = _timeout_seconds(backend.describe_state_machine(arn).definition)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while execution.status == "RUNNING":
        if deadline is not None and time.monotonic() > deadline:
            backend.stop_execution(execution.execution_arn)
            execution.status = "TIMED_OUT"
            execution.error, execution.cause = "States.Timeout", f"the execution passed {timeout_s} s"
            break
        time.sleep(_POLL_S)
    response: dict[str, Any] = {
        "executionArn": execution.execution_arn, "stateMachineArn": arn, "name": execution.name,
        "startDate": execution.start_date, "stopDate": execution.stop_date or time.time(),
        "status": str(getattr(execution.status, "value", execution.status)),
        "input": execution.execution_input,
    }
    if response["status"] == "SUCCEEDED":
        output = execution.output
        response["output"] = output if isinstance(output, str) else json.dumps(output)
    if execution.error is not None:
        response["error"] = execution.error
    if execution.cause is not None:
        response["cause"] = execution.cause
    return ActionResult(response)


def _timeout_seconds(definition: str) -> float | None:
    try:
        value = json.loads(definition).get("TimeoutSeconds")
    except (TypeError, ValueError):
        return None
    return float(value) if value else None
