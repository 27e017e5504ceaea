"""Running the query workflow (Step Functions) and reading its result.

On AWS the state machine is Express and runs synchronously (StartSyncExecution). The local emulator
has no synchronous API, so locally the same definition is started and polled; the result has the same
shape either way.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from stratus.aws.clients import client
from stratus.config import get_settings
from stratus.errors import StratusError, TransientError


class WorkflowFailed(StratusError):
    """The workflow ended in a Fail state; `error` is the failing task's error name (e.g. InvalidInput)."""

    code = "workflow_failed"

    def __init__(self, error: str, cause: str) -> None:
        detail = _cause_message(cause)
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error
        self.cause = cause
        self.detail = detail


@dataclass
class WorkflowResult:
    output: dict[str, Any]
    execution_arn: str
    duration_ms: float  # as the caller saw it


def run_workflow(payload: dict[str, Any], *, state_machine_arn: str | None = None, name: str | None = None,
                 timeout_s: float = 300.0) -> WorkflowResult:
    settings = get_settings()
    arn = state_machine_arn or settings.query_state_machine_arn
    if not arn:
        raise StratusError("STRATUS_QUERY_STATE_MACHINE_ARN is not set: no query workflow to run")
    # A synchronous run lasts as long as the workflow; the caller's deadline bounds the wait.
    sfn = client("stepfunctions", read_timeout=max(1, int(timeout_s)))
    name = name or f"q-{uuid.uuid4().hex}"
    started = time.perf_counter()
    if settings.env == "local":
        response = _start_and_wait(sfn, arn, name, payload, timeout_s)
    else:
        from botocore.exceptions import ReadTimeoutError

        try:
            response = sfn.start_sync_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))
        except ReadTimeoutError:
            raise TransientError(f"the workflow did not finish within {timeout_s:.0f} s") from None
    elapsed = round((time.perf_counter() - started) * 1000, 3)
    status = response["status"]
    if status != "SUCCEEDED":
        raise WorkflowFailed(response.get("error") or status, response.get("cause") or "")
    return WorkflowResult(json.loads(response["output"]), response["executionArn"], elapsed)


def _start_and_wait(sfn: Any, arn: str, name: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    execution = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))["executionArn"]
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        if time.monotonic() > deadline:
            sfn.stop_execution(executionArn=execution, error="Timeout", cause="the caller stopped waiting")
            raise TransientError(f"the workflow did not finish within {timeout_s:.0f} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)


def _cause_message(cause: str) -> str:
    """A task failure's cause is Lambda's error JSON ({"errorMessage", "errorType", ...}); keep the message."""
    try:
        data = json.loads(cause)
    except (TypeError, ValueError):
        return cause
    if isinstance(data, dict):
        return str(data.get("errorMessage") or data.get("message") or cause)
    return cause
