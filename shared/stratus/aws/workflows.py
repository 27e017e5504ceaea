"""Running the query workflow (Step Functions) and reading its result.

The state machine is Express and runs synchronously (StartSyncExecution), on AWS and locally (the
local stack teaches moto that call: stratus_tools.local.sync_executions). The caller's X-Ray trace header goes
with it (`traceHeader`): with the state machine's tracing on, Step Functions records the run in that trace
and passes it on to each task's Lambda invocation, so one request is one trace. The OpenTelemetry (W3C)
context goes in the input's `trace_context`, which every task's invocation span continues.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

from stratus import spans
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


class WorkflowTimedOut(TransientError):
    """The workflow did not finish within the caller's deadline (or its own TimeoutSeconds)."""

    code = "workflow_timeout"


@dataclass
class WorkflowResult:
    output: dict[str, Any]
    execution_arn: str
    duration_ms: float  # as the caller saw it


def run_workflow(payload: dict[str, Any], *, state_machine_arn: str | None = None, name: str | None = None,
                 timeout_s: float = 300.0, trace_header: str | None = None) -> WorkflowResult:
    """Runs the Express workflow synchronously, waiting at most `timeout_s` (the caller's remaining time).

    `trace_header` (X-Ray's `Root=...;Parent=...;Sampled=...`) defaults to the current invocation's
    (stratus.spans.trace_header); a caller that got its trace from elsewhere (an HTTP request's
    X-Amzn-Trace-Id) passes it.

    The SDK never retries the call: a run that outlived the wait is still going, and a retry would start a
    second one. The state machine's own TimeoutSeconds (below the gateway's) and the deadline each task
    receives stop the run itself.
    """
    settings = get_settings()
    arn = state_machine_arn or settings.query_state_machine_arn
    if not arn:
        raise StratusError("STRATUS_QUERY_STATE_MACHINE_ARN is not set: no query workflow to run")
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    sfn = client("stepfunctions", read_timeout=max(1, math.ceil(timeout_s)), max_attempts=1)
    name = name or f"q-{uuid.uuid4().hex}"
    started = time.perf_counter()
    with spans.span("workflow", execution=name) as step:
        # W3C context rides in the input (traceHeader is X-Ray's format only): each task's span continues it.
        payload = {**payload, "trace_context": spans.carrier()}
        trace_header = trace_header or spans.trace_header()
        tracing = {"traceHeader": trace_header} if trace_header else {}
        try:
            response = sfn.start_sync_execution(stateMachineArn=arn, name=name, input=json.dumps(payload),
                                                **tracing)
        except (ReadTimeoutError, ConnectTimeoutError):
            raise WorkflowTimedOut(f"the workflow did not finish within {timeout_s:.1f} s") from None
        step.annotate(workflow_status=response["status"])
    elapsed = round((time.perf_counter() - started) * 1000, 3)
    status = response["status"]
    if status == "TIMED_OUT":
        raise WorkflowTimedOut(f"the workflow passed its time limit ({response.get('cause') or 'States.Timeout'})")
    if status != "SUCCEEDED":
        raise WorkflowFailed(response.get("error") or status, response.get("cause") or "")
    return WorkflowResult(json.loads(response["output"]), response["executionArn"], elapsed)


def _cause_message(cause: str) -> str:
    """A task failure's cause is Lambda's error JSON ({"errorMessage", "errorType", ...}); keep the message."""
    try:
        data = json.loads(cause)
    except (TypeError, ValueError):
        return cause
    if isinstance(data, dict):
        return str(data.get("errorMessage") or data.get("message") or cause)
    return cause
