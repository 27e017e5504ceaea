"""stratus.lambda_web and the deadline and departure handling it feeds: what the Lambda Web Adapter's
header gives the app, the request's budget cut to the invocation, and an event stream whose client left."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from stratus.gateway.context import INVOCATION_MARGIN_S, RequestContext, new_context
from stratus.gateway.sse import EventStream
from stratus.lambda_web import InvocationContext, LambdaInvocations


class FakeObs:
    def __init__(self) -> None:
        self.logger = FakeLogger()
        self.counts: list[str] = []
        self.flushed = 0

    def count(self, name: str, value: float = 1) -> None:
        self.counts.append(name)

    def flush_metrics(self) -> None:
        self.flushed += 1


class FakeLogger:
    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.correlation_id: str | None = None

    def clear_state(self) -> None:
        self.keys = {}

    def append_keys(self, **keys: Any) -> None:
        self.keys.update(keys)

    def set_correlation_id(self, value: str) -> None:
        self.correlation_id = value


def test_the_lambda_context_header_is_read_and_bad_ones_are_ignored() -> None:
    header = json.dumps({"request_id": "abc", "deadline": 1_700_000_000_500, "invoked_function_arn": "arn:x",
                         "xray_trace_id": "Root=1-a-b;Parent=c;Sampled=1"}).encode()
    invocation = InvocationContext.from_header(header)
    assert invocation == InvocationContext("abc", 1_700_000_000.5, "arn:x", "Root=1-a-b;Parent=c;Sampled=1")
    assert InvocationContext.from_header(b"not json") is None
    assert InvocationContext.from_header(b"[1, 2]") is None
    assert InvocationContext.from_header(b'{"request_id": "x"}').deadline_at is None  # type: ignore[union-attr]


def test_an_invocation_decides_the_request_id_passes_the_deadline_and_counts_the_response() -> None:
    obs = FakeObs()
    seen: dict[str, Any] = {}

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    app = LambdaInvocations(inner, obs, request_id=lambda given: given or "req_new")
    context = json.dumps({"request_id": "lambda-1", "deadline": 2_000_000_000_000}).encode()
    scope = {"type": "http", "path": "/v1/models", "method": "GET",
             "headers": [(b"x-amzn-lambda-context", context), (b"x-request-id", b"client-7")]}
    asyncio.run(app(scope, receive, send))
    assert seen["state"]["deadline_at"] == 2_000_000_000
    assert (b"x-request-id", b"client-7") in seen["headers"]
    assert obs.logger.correlation_id == "client-7" and obs.logger.keys["function_request_id"] == "lambda-1"
    assert obs.logger.keys["cold_start"] is True
    assert obs.counts == ["ColdStart", "Responses4xx"] and obs.flushed == 1
    # A second invocation of the same environment is warm; without the header nothing is added.
    asyncio.run(app({**scope, "headers": [(b"x-amzn-lambda-context", context)]}, receive, send))
    assert obs.logger.keys["cold_start"] is False and seen["headers"][-1] == (b"x-request-id", b"req_new")
    seen.clear()
    asyncio.run(app({"type": "http", "path": "/health", "method": "GET", "headers": []}, receive, send))
    assert "state" not in seen and obs.flushed == 2


def test_the_budget_is_cut_to_the_invocations_deadline() -> None:
    ctx = RequestContext(request_id="r", route="/", method="GET")
    assert 24.9 < ctx.budget_s(25) <= 25  # no invocation deadline: the limit, from the request's start
    ctx.deadline_at = time.time() + 10
    assert abs(ctx.budget_s(25) - (10 - INVOCATION_MARGIN_S)) < 0.1
    assert abs(ctx.deadline_ms(25) / 1000 - (ctx.deadline_at - INVOCATION_MARGIN_S)) < 0.1
    scope: dict[str, Any] = {"state": {"deadline_at": 123.0}, "path": "/", "method": "GET"}
    assert new_context(scope, "r").deadline_at == 123.0


def test_a_stream_whose_client_left_is_closed_before_its_background_task_runs() -> None:
    order: list[str] = []
    release = threading.Event()

    def events() -> Any:
        try:
            yield b"data: 1\n\n"
            release.wait(5)  # a step under way when the client leaves: close() waits for it
            yield b"data: 2\n\n"
            yield b"data: 3\n\n"
            order.append("completed")
        except GeneratorExit:
            order.append("closed")
            raise

    async def background() -> None:
        order.append("background")

    from starlette.background import BackgroundTask

    stream = EventStream(events(), background=BackgroundTask(background))
    messages = iter([{"type": "http.request", "body": b""}])

    async def receive() -> dict[str, Any]:
        message = next(messages, None)
        if message is not None:
            return message
        await asyncio.sleep(0.05)
        release.set()
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(stream({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send))
    assert order == ["closed", "background"]
    assert not any(m.get("body") == b"data: 3\n\n" for m in sent)


def test_a_request_without_traceparent_joins_the_trace_xray_sampled() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from stratus import spans

    seen: list[list[tuple[bytes, bytes]]] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    def invoke(trace: str, *headers: tuple[bytes, bytes]) -> dict[bytes, bytes]:
        context = json.dumps({"request_id": "l-1", "xray_trace_id": trace}).encode()
        scope = {"type": "http", "path": "/v1/models", "method": "GET",
                 "headers": [(b"x-amzn-lambda-context", context), *headers]}
        asyncio.run(LambdaInvocations(inner, FakeObs(), request_id=lambda given: "r")(scope, receive, send))
        return dict(seen[-1])

    sampled = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    assert b"traceparent" not in invoke(sampled)  # OpenTelemetry off: nothing added
    provider = TracerProvider()
    spans.use(provider)
    try:
        # X-Ray's trace id and Lambda's segment as the parent, so X-Ray shows one trace
        assert invoke(sampled)[b"traceparent"] == b"00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
        # a caller's own W3C context wins
        mine = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        assert invoke(sampled, (b"traceparent", mine))[b"traceparent"] == mine
        # a trace X-Ray did not sample: the request's own sampler decides, in a trace of its own
        assert b"traceparent" not in invoke(sampled.replace("Sampled=1", "Sampled=0"))
    finally:
        spans.use(None)
        provider.shutdown()
