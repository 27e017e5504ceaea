"""The loopback Runtime API against the documented protocol: driven by the real RIC for the buffered
calls, and by a raw HTTP client for the streaming response mode (which the Python RIC does not use)."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import pytest

from tests.lambda_contract.environment import FunctionSpec
from tests.lambda_contract.process import FunctionProcess
from tests.lambda_contract.runtime_api import PREFIX, Invocation, RuntimeApi

HANDLER = '''
import os, time

def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"echo": event, "request_id": context.aws_request_id, "remaining_ms": context.get_remaining_time_in_millis(),
            "trace": os.environ.get("_X_AMZN_TRACE_ID"), "arn": context.invoked_function_arn}
'''


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory, lambda_builds: dict) -> FunctionProcess:
    code = tmp_path_factory.mktemp("toy")
    (code / "app.py").write_text(HANDLER)
    (code / "broken.py").write_text("import not_a_module_anywhere\n")
    spec = FunctionSpec(logical_id="Toy", name="toy", code_dir=code, handler="app.handler", memory_mb=128,
                        timeout_s=3, layers=[], environment={}, tracing=False)
    process = FunctionProcess(spec, [], lambda_builds["runtime"], region="us-east-1", xray_daemon="127.0.0.1:2000",
                              logs=code / "toy.log")
    yield process
    process.close()


def test_the_ric_gets_the_event_with_lambdas_headers_and_posts_the_result(toy: FunctionProcess) -> None:
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    invocation = toy.invoke({"n": 1}, trace_header=trace)
    assert invocation.error_type is None, toy.log_text()
    result = invocation.payload
    assert result["echo"] == {"n": 1} and result["request_id"] == invocation.request_id
    assert 0 < result["remaining_ms"] <= 3000  # from Lambda-Runtime-Deadline-Ms
    assert result["trace"].startswith("Root=1-5759e988-bd862e3fe1be46a994272793")
    assert result["arn"].endswith(":function:toy")


def test_a_handler_error_goes_to_the_error_endpoint(toy: FunctionProcess) -> None:
    invocation = toy.invoke({"fail": True})
    assert invocation.error_type == "Unhandled"
    assert invocation.payload["errorType"] == "ValueError" and invocation.payload["errorMessage"] == "asked to fail"


def test_the_deadline_kills_the_environment_and_the_next_start_is_cold(toy: FunctionProcess) -> None:
    starts = len(toy.cold_starts)
    invocation = toy.invoke({"sleep": 5}, timeout_s=0.5)
    assert invocation.error_type == "Sandbox.Timedout" and toy.proc is None
    assert toy.invoke({"n": 2}).payload["echo"] == {"n": 2}
    assert len(toy.cold_starts) == starts + 1


def test_an_import_error_is_an_init_error(toy: FunctionProcess) -> None:
    broken = FunctionProcess(
        FunctionSpec(logical_id="Broken", name="broken", code_dir=toy.spec.code_dir, handler="broken.handler",
                     memory_mb=128, timeout_s=5, layers=[], environment={}, tracing=False),
        [], toy.runtime, region="us-east-1", xray_daemon="127.0.0.1:2000", logs=toy.logs.with_name("broken.log"))
    try:
        invocation = broken.invoke({})
    finally:
        broken.close()
    assert invocation.error_type == "Runtime.ImportModuleError"
    assert "not_a_module_anywhere" in invocation.payload["errorMessage"]


def _post_stream(api: RuntimeApi, request_id: str, parts: list[bytes], trailers: dict[str, str],
                 gap_s: float) -> int:
    host, port = api.address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", f"{PREFIX}/invocation/{request_id}/response")
    conn.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Trailer", ", ".join(trailers))
    conn.endheaders()
    for part in parts:
        conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        time.sleep(gap_s)
    conn.send(b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in trailers.items()) + b"\r\n")
    status = conn.getresponse().status
    conn.close()
    return status


def test_a_streamed_response_is_recorded_chunk_by_chunk_with_its_trailers() -> None:
    api = RuntimeApi().start()
    try:
        ok = api.submit(Invocation(event={}))
        assert _post_stream(api, ok.request_id, [b"data: one\n\n", b"data: two\n\n"], {}, gap_s=0.2) == 202
        assert ok.streamed and ok.body == b"data: one\n\ndata: two\n\n" and len(ok.chunks) == 2
        assert ok.chunks[1][0] - ok.chunks[0][0] >= 0.15  # the first part arrived before the second was sent
        failed = api.submit(Invocation(event={}))
        status = _post_stream(api, failed.request_id, [b"partial"], {
            "Lambda-Runtime-Function-Error-Type": "Runtime.StreamError",
            "Lambda-Runtime-Function-Error-Body": "eyJlcnJvck1lc3NhZ2UiOiAiYm9vbSJ9"}, gap_s=0)
        assert status == 202 and failed.error_type == "Runtime.StreamError" and failed.body == b"partial"
        # An outcome is final: a second response for the same request is refused.
        assert _post_stream(api, ok.request_id, [b"again"], {}, gap_s=0) == 400
    finally:
        api.stop()


def test_unknown_requests_are_refused() -> None:
    api = RuntimeApi().start()
    try:
        host, port = api.address.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("POST", f"{PREFIX}/invocation/nope/response", body=b"{}")
        response = conn.getresponse()
        assert response.status == 400 and json.loads(response.read())["errorType"] == "InvalidRequestID"
    finally:
        api.stop()


def test_a_snapstart_init_asks_for_its_snapshot_and_a_failed_restore_hook_is_recorded() -> None:
    # What the RIC does under AWS_LAMBDA_INITIALIZATION_TYPE=snap-start once its init is done
    api = RuntimeApi().start()
    try:
        host, port = api.address.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        assert api.snapshot_at is None
        conn.request("GET", f"{PREFIX}/restore/next")
        response = conn.getresponse()
        response.read()
        assert response.status == 200 and api.snapshot_at is not None  # answered at once: "restored"
        error = {"errorMessage": "hook failed", "errorType": "RuntimeError"}
        conn.request("POST", f"{PREFIX}/restore/error", body=json.dumps(error).encode(),
                     headers={"Lambda-Runtime-Function-Error-Type": "Runtime.AfterRestoreError"})
        response = conn.getresponse()
        response.read()
        assert response.status == 202 and api.restore_error == error
        api.reset()  # a new environment starts unsnapshotted
        assert api.snapshot_at is None and api.restore_error is None
    finally:
        api.stop()


def test_the_server_is_small_and_loopback_only() -> None:
    api = RuntimeApi()
    assert api.address.startswith("127.0.0.1:")
    api.stop()
    # the Runtime API, with the hooks the Extensions API (its own module) needs (invocations complete when
    # every extension is done) and SnapStart's two restore endpoints
    assert Path(__file__).with_name("runtime_api.py").read_text().count("\n") < 280
    assert Path(__file__).with_name("extensions_api.py").read_text().count("\n") < 120
