"""StartSyncExecution for moto's Step Functions, which implements only the asynchronous StartExecution.

On AWS the gateway runs the Express query workflow with StartSyncExecution; locally the same call goes
to moto, so the local stack teaches moto that action: start the execution (moto runs the ASL in a
thread), wait for it to end, and answer with StartSyncExecution's response shape. The state machine's
top-level TimeoutSeconds is honoured as AWS does (status TIMED_OUT, error States.Timeout), which moto's
executor does not do by itself.

Tracing: a `traceHeader` given to StartSyncExecution is kept on the execution, and each Lambda task of
that execution invokes its function with it (the Invoke request's X-Amzn-Trace-Id, which the local Lambda
hook hands to the function as its trace header). On AWS, a state machine with tracing on does the same,
with the task's own subsegment as the Parent; here the caller's header goes on unchanged (same Root).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

_POLL_S = 0.005


def install() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.responses import StepFunctionResponse

    if getattr(StepFunctionResponse, "start_sync_execution", None) is _start_sync_execution:
        return
    StepFunctionResponse.start_sync_execution = _start_sync_execution  # type: ignore[attr-defined]
    # Lambda tasks: `execute_lambda_function_integration` runs on the task's thread and (through
    # `_invoke_lambda_function`) makes a boto3 client with `boto_client_for`; both are module globals.
    global _execute, _client_for
    _execute = lambda_eval_utils.execute_lambda_function_integration
    _client_for = lambda_eval_utils.boto_client_for
    lambda_eval_utils.execute_lambda_function_integration = _execute_with_trace
    lambda_eval_utils.boto_client_for = _client_carrying_trace


_execute: Any = None
_client_for: Any = None


def _execute_with_trace(env: Any, parameters: dict, region: str, state_credentials: Any) -> None:
    from stratus_tools.local.lambdas import outgoing_trace_header

    with outgoing_trace_header(_trace_header_of(env)):
        _execute(env=env, parameters=parameters, region=region, state_credentials=state_credentials)


def _client_carrying_trace(region: str, service: str, state_credentials: Any = None) -> Any:
    from stratus_tools.local.lambdas import carry_trace_headers

    made = _client_for(region=region, service=service, state_credentials=state_credentials)
    return carry_trace_headers(made) if service == "lambda" else made


def _trace_header_of(env: Any) -> str | None:
    """The traceHeader the running execution was started with (None: untraced)."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    try:
        arn = env.states.context_object.context_object_data["Execution"]["Id"]
        _, _, _, region, account, _ = arn.split(":", 5)
        executions = stepfunctions_parser_backends[account][region]._get_executions()
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    found = next((e for e in executions if e.execution_arn == arn), None)
    return getattr(found, "trace_header", None) or None


def _start_sync_execution(self: Any) -> Any:
    from moto.core.responses import ActionResult

    backend = self.stepfunction_backend
    arn = self._get_param("stateMachineArn")
    trace_header = self._get_param("traceHeader")
    tracing = {"trace_header": trace_header} if trace_header else {}
    name = self._get_param("name") or str(uuid.uuid4())  # AWS names an unnamed execution; moto would use "None"
    execution = backend.start_execution(arn, name, self._get_param("input", if_none="{}"), **tracing)
    timeout_s = _timeout_seconds(backend.describe_state_machine(arn).definition)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while execution.status == "RUNNING":
        if deadline is not None and time.monotonic() > deadline:
            backend.stop_execution(execution.execution_arn)
            execution.status = "TIMED_OUT"
            execution.error, execution.cause = "States.Timeout", f"the execution passed {timeout_s} s"
            break
        time.sleep(_POLL_S)
    _await_result(execution)
    response: dict[str, Any] = {
        "executionArn": execution.execution_arn, "stateMachineArn": arn, "name": execution.name,
        "startDate": execution.start_date, "stopDate": execution.stop_date or time.time(),
        "status": str(getattr(execution.status, "value", execution.status)),
        "input": execution.execution_input,
    }
    if trace_header:
        response["traceHeader"] = trace_header
    if response["status"] == "SUCCEEDED":
        output = execution.output
        response["output"] = output if isinstance(output, str) else json.dumps(output)
    if execution.error is not None:
        response["error"] = execution.error
    if execution.cause is not None:
        response["cause"] = execution.cause
    return ActionResult(response)


def _await_result(execution: Any, limit_s: float = 2.0) -> None:
    """moto's worker sets an execution's status before its output (or error): a poll between the two would
    answer SUCCEEDED with output null. Wait, briefly, for the field the status promises."""
    status = str(getattr(execution.status, "value", execution.status))
    field = {"SUCCEEDED": "output", "FAILED": "error"}.get(status)
    until = time.monotonic() + limit_s
    while field is not None and getattr(execution, field, None) is None and time.monotonic() < until:
        time.sleep(_POLL_S)


def _timeout_seconds(definition: str) -> float | None:
    try:
        value = json.loads(definition).get("TimeoutSeconds")
    except (TypeError, ValueError):
        return None
    return float(value) if value else None
