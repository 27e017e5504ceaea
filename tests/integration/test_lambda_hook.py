"""Guards the private moto API the local stack relies on to route Lambda invocations to local handlers.

If moto renames or reshapes `LambdaFunction._invoke_lambda`, these tests fail loudly instead of every
local invocation silently trying to start Docker.
"""

from __future__ import annotations

import base64
import inspect
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from stratus.config import PROJECT_ROOT, load_settings
from stratus_tools.local.stack import LocalStack

HANDLER = textwrap.dedent(
    """\
    import os

    def handler(event, context):
        if event.get("fail"):
            raise RuntimeError("asked to fail")
        return {
            "echo": event,
            "function_name": context.function_name,
            "memory": context.memory_limit_in_mb,
            "request_id": context.aws_request_id,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "arn": context.invoked_function_arn,
            "bucket": os.environ.get("STRATUS_DOCUMENTS_BUCKET"),
        }
    """
)


def test_moto_invoke_hook_signature_is_what_the_local_stack_replaces() -> None:
    from moto.awslambda.models import LambdaFunction
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

    from stratus_tools.local import lambdas, sync_executions

    # moto's own methods (the hook may be installed by a stack still running in this process)
    invoke_lambda = lambdas._original or LambdaFunction._invoke_lambda
    invoke = lambdas._original_invoke or LambdaFunction.invoke
    sig = inspect.signature(invoke_lambda)
    assert list(sig.parameters) == ["self", "event"], f"moto changed _invoke_lambda: {sig}"
    assert "tuple[str, bool, str]" in str(sig.return_annotation), f"moto changed its result: {sig}"
    # moto's public invoke path must still go through it, with the request's headers (the trace header).
    assert list(inspect.signature(invoke).parameters) == ["self", "body", "request_headers", "response_headers"]
    assert "self._invoke_lambda(" in inspect.getsource(invoke)
    # Step Functions' Lambda tasks: what sync_executions wraps to send the execution's trace header.
    execute = sync_executions._execute or lambda_eval_utils.execute_lambda_function_integration
    client_for = sync_executions._client_for or lambda_eval_utils.boto_client_for
    assert list(inspect.signature(execute).parameters) == ["env", "parameters", "region", "state_credentials"]
    assert list(inspect.signature(client_for).parameters) == ["region", "service", "state_credentials"]
    assert "boto_client_for(" in inspect.getsource(lambda_eval_utils._invoke_lambda_function)


@pytest.fixture
def echo_stack(pg_url: str, tmp_path: Path):
    code = tmp_path / "echo"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    template = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Globals": {"Function": {"Runtime": "python3.12", "Timeout": 30}},
        "Resources": {
            "EchoFunction": {"Type": "AWS::Serverless::Function",
                             "Properties": {"CodeUri": str(code), "Handler": "app.handler", "MemorySize": 256}},
            "DocumentsBucket": {"Type": "AWS::S3::Bucket",
                                "Properties": {"BucketName": {"Fn::Sub": "${AWS::StackName}-docs"}}},
            "Unemulated": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
        },
    }
    path = tmp_path / "template.yaml"
    path.write_text(json.dumps(template))  # JSON is YAML, and long-form intrinsics need no tags
    settings = load_settings(data_dir=PROJECT_ROOT / ".stratus" / "test-hook")
    with LocalStack(settings, template_path=path) as stack:
        yield stack


def test_invoke_through_boto3_reaches_the_local_handler(echo_stack: LocalStack) -> None:
    # Given a function created in moto from the template
    name = echo_stack.function_name("EchoFunction")
    assert echo_stack.resources is not None and "Unemulated" in echo_stack.resources.skipped

    # When it is invoked through the Lambda API
    result = echo_stack.client("lambda").invoke(FunctionName=name, Payload=b'{"hello": "world"}',
                                                LogType="Tail")

    # Then the local handler ran in this process, with a Lambda-shaped context and the stack's settings
    assert "FunctionError" not in result
    body = json.loads(result["Payload"].read())
    assert body["echo"] == {"hello": "world"}
    assert body["function_name"] == name == "stratus-local-EchoFunction"
    assert body["memory"] == 256
    assert 0 < body["remaining_ms"] <= 30_000
    assert body["arn"].endswith(f":function:{name}")
    assert body["bucket"] == "stratus-local-docs"
    assert body["request_id"] in base64.b64decode(result["LogResult"]).decode()


def test_handler_exception_is_a_function_error(echo_stack: LocalStack) -> None:
    result = echo_stack.client("lambda").invoke(
        FunctionName=echo_stack.function_name("EchoFunction"), Payload=b'{"fail": true}')

    assert result["FunctionError"]
    error = json.loads(result["Payload"].read())
    assert error["errorType"] == "RuntimeError"
    assert error["errorMessage"] == "asked to fail"
    assert any("asked to fail" in line for line in error["stackTrace"])


def test_hook_is_removed_when_the_stack_stops(echo_stack: LocalStack) -> None:
    from moto.awslambda.models import LambdaFunction

    from stratus_tools.local import lambdas

    assert LambdaFunction._invoke_lambda is lambdas._invoke_local
    # moto's state and the hook are process-wide: a second stack is refused, not silently merged
    with pytest.raises(RuntimeError, match="already running"):
        LocalStack(echo_stack.settings, template_path=echo_stack.template_path).start()
    assert LambdaFunction._invoke_lambda is lambdas._invoke_local
    echo_stack.client("lambda").invoke(FunctionName=echo_stack.function_name("EchoFunction"), Payload=b"{}")
    assert _environments("EchoFunction")  # the invocation's environment stays warm
    echo_stack.stop()
    assert LambdaFunction._invoke_lambda is not lambdas._invoke_local
    assert _environments("EchoFunction") == []  # the stop ended it


def _environments(logical_id: str) -> list[str]:
    """The live execution environments of a function (their threads are named after it)."""
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith(f"lambda-{logical_id}-") and t.is_alive()]


class TraceRecorder:
    """Stands for a registered function: records the trace header each invocation arrived with."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.headers: list[str | None] = []

    def invoke(self, event: Any, *, region: str, account_id: str, trace_header: str | None = None
               ) -> tuple[str, bool, str]:
        self.headers.append(trace_header)
        return json.dumps({"ok": True, **event}), False, ""


def test_trace_headers_reach_the_function_from_invoke_and_from_a_step_functions_task(echo_stack: LocalStack
                                                                                     ) -> None:
    from stratus_tools.local import lambdas

    name = echo_stack.function_name("EchoFunction")
    recorder = TraceRecorder(name)
    lambdas.register(recorder)  # type: ignore[arg-type]
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    try:
        # A direct Invoke with X-Amzn-Trace-Id (what the SQS poller sends for a traced message)
        client = lambdas.carry_trace_headers(echo_stack.client("lambda"))
        with lambdas.outgoing_trace_header(header):
            client.invoke(FunctionName=name, Payload=b"{}")
        client.invoke(FunctionName=name, Payload=b"{}")  # outside the block: no header
        assert recorder.headers == [header, None]
        # A state machine's Lambda task, in an execution started with a traceHeader (and one without)
        from stratus.aws.clients import client as aws_client

        sfn = aws_client("stepfunctions")  # as the gateway makes it (no "sync-" host prefix locally)
        arn = echo_stack.resources.ref("EchoFunction", "Arn")  # type: ignore[union-attr]
        machine = sfn.create_state_machine(
            name=f"traced-{uuid.uuid4().hex[:8]}", type="EXPRESS", roleArn="arn:aws:iam::123456789012:role/sfn",
            definition=json.dumps({"StartAt": "Call", "States": {
                "Call": {"Type": "Task", "Resource": arn, "TimeoutSeconds": 10, "End": True}}}))["stateMachineArn"]
        recorder.headers.clear()
        traced = sfn.start_sync_execution(stateMachineArn=machine, input='{"n": 1}', traceHeader=header)
        untraced = sfn.start_sync_execution(stateMachineArn=machine, input='{"n": 2}')
        assert traced["status"] == untraced["status"] == "SUCCEEDED", (traced, untraced)
        assert traced["traceHeader"] == header and "traceHeader" not in untraced
        assert recorder.headers == [header, None]
    finally:
        lambdas.unregister(name)


PROBE = textwrap.dedent(
    """\
    import threading

    from stratus.db.connection import get_connection

    _twins = threading.Barrier(2, timeout=20)

    def handler(event, context):
        if event.get("twin"):
            _twins.wait()  # returns only if another invocation runs at the same time
        conn = get_connection()
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.rollback()
        return {"thread": threading.current_thread().name, "backend": backend}
    """
)


def _probe(folder: Path) -> Any:
    from stratus_tools.local.lambdas import LocalFunction

    (folder / "app.py").write_text(PROBE)
    return LocalFunction("Probe", "stratus-local-Probe", folder, "app.handler")


def _invoke(fn: Any, event: dict[str, Any]) -> dict[str, Any]:
    payload, errored, _ = fn.invoke(event, region="us-east-1", account_id="123456789012")
    assert not errored, payload
    result: dict[str, Any] = json.loads(payload)
    return result


def _backends_left(pg_url: str, backends: set[int], wait_s: float = 10) -> set[int]:
    """Which of `backends` are still connected once they have had `wait_s` to go."""
    import time

    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:  # autocommit: each poll sees a fresh snapshot
        deadline = time.monotonic() + wait_s
        while True:
            alive = {r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity")} & backends
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.1)


def test_invocations_run_on_warm_environments_that_keep_their_connection(pg_url: str, tmp_path: Path) -> None:
    """As on Lambda: one invocation after another reuses the warm environment and its database connection;
    two at once run on two environments; closing the function closes what its environments kept."""
    from concurrent.futures import ThreadPoolExecutor

    fn = _probe(tmp_path)
    try:
        first, second = _invoke(fn, {}), _invoke(fn, {})
        assert first == second  # the same environment, the same connection
        with ThreadPoolExecutor(2) as pool:
            twins = list(pool.map(lambda event: _invoke(fn, event), [{"twin": True}] * 2))
        assert len({t["thread"] for t in twins}) == len({t["backend"] for t in twins}) == 2
        assert first in twins  # the warm environment served one of them
    finally:
        fn.close()
    assert _backends_left(pg_url, {t["backend"] for t in twins}) == set()


def test_an_idle_environment_ends_and_closes_its_connection(pg_url: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from stratus_tools.local import lambdas

    monkeypatch.setattr(lambdas, "IDLE_RETIRE_S", 0.3)
    fn = _probe(tmp_path)
    try:
        first = _invoke(fn, {})
        time.sleep(1.0)
        assert _backends_left(pg_url, {first["backend"]}) == set()
        again = _invoke(fn, {})  # a cold environment, a new connection
        assert again["thread"] != first["thread"] and again["backend"] != first["backend"]
    finally:
        fn.close()
