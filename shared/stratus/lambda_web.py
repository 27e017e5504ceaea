"""An ASGI app as a Lambda function behind the AWS Lambda Web Adapter.

The adapter forwards each invocation as an HTTP request and puts the invocation's Lambda context in the
`x-amzn-lambda-context` header (JSON: request_id, deadline in epoch ms, invoked_function_arn,
xray_trace_id, env_config). `LambdaInvocations` gives every such request what `Observability.handler`
gives a plain handler's invocation:

- the request id decided once (the client's `x-request-id` when sane) and written back into the request,
  so the app, the logs and the response share it; log lines carry it with the Lambda request id;
- the X-Ray trace header published as `_X_AMZN_TRACE_ID`, as the Runtime Interface Client does (with
  OpenTelemetry off, the query workflow's `traceHeader` continues it: stratus.spans.trace_header); a request
  without a W3C `traceparent` whose invocation X-Ray sampled gets one for the same trace, so the request span
  joins the trace of API Gateway's and Lambda's own segments (one trace in X-Ray, docs/observability.md);
- the invocation's deadline in `scope["state"]["deadline_at"]` (epoch seconds), so the app can end its
  work, and a stream, before Lambda ends the environment;
- the response's status class counted, and the metrics and OpenTelemetry spans flushed, once the response
  is complete (the process may be frozen after it).

Without the header (local mode, tests) the app runs as it is.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stratus import spans, telemetry

LAMBDA_CONTEXT_HEADER = b"x-amzn-lambda-context"
TRACE_VARIABLE = "_X_AMZN_TRACE_ID"
TRACEPARENT_HEADER = spans.TRACEPARENT.encode()


@dataclass(frozen=True)
class InvocationContext:
    request_id: str
    deadline_at: float | None  # epoch seconds
    function_arn: str
    trace_id: str | None

    @classmethod
    def from_header(cls, raw: bytes) -> InvocationContext | None:
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        deadline = data.get("deadline")
        return cls(request_id=str(data.get("request_id") or ""),
                   deadline_at=deadline / 1000 if isinstance(deadline, int | float) else None,
                   function_arn=str(data.get("invoked_function_arn") or ""),
                   trace_id=data.get("xray_trace_id") or None)

    def remaining_s(self) -> float | None:
        return None if self.deadline_at is None else self.deadline_at - time.time()


class LambdaInvocations:
    """ASGI middleware: one HTTP request = one Lambda invocation (see the module docstring)."""

    def __init__(self, app: Any, obs: Any, *, request_id: Callable[[str | None], str],
                 request_id_header: bytes = b"x-request-id") -> None:
        self.app = app
        self.obs = obs
        self.request_id = request_id
        self.request_id_header = request_id_header
        self._cold = True

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers", ()) if k == LAMBDA_CONTEXT_HEADER), None)
        invocation = InvocationContext.from_header(raw) if raw is not None else None
        if invocation is None:
            await self.app(scope, receive, send)
            return
        rid = self._decide_request_id(scope)
        scope.setdefault("state", {})["deadline_at"] = invocation.deadline_at
        if invocation.trace_id:
            os.environ[TRACE_VARIABLE] = invocation.trace_id
            self._continue_xray_trace(scope, invocation.trace_id)
        logger = self.obs.logger
        logger.clear_state()
        logger.append_keys(function_request_id=invocation.request_id, cold_start=self._cold,
                           function_arn=invocation.function_arn, xray_trace_id=invocation.trace_id)
        logger.set_correlation_id(rid)
        if self._cold:
            self.obs.count("ColdStart")
        self._cold = False
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message.get("status", 200))
            await send(message)

        try:
            await self.app(scope, receive, send_status)  # the request span is GatewayMiddleware's
        finally:
            self.obs.count(f"Responses{status // 100}xx")
            self.obs.flush_metrics()
            if spans.otel_enabled():  # the response is complete: the invocation's spans leave now
                await asyncio.to_thread(telemetry.flush)

    @staticmethod
    def _continue_xray_trace(scope: dict[str, Any], trace_header: str) -> None:
        headers = scope.get("headers", ())
        if not spans.enabled() or any(k == TRACEPARENT_HEADER for k, _ in headers):
            return  # a caller's W3C context wins: its trace id is kept across every function
        traceparent = spans.traceparent_of_xray(trace_header)
        if traceparent is not None:
            scope["headers"] = [*headers, (TRACEPARENT_HEADER, traceparent.encode("latin-1"))]

    def _decide_request_id(self, scope: dict[str, Any]) -> str:
        headers = [(k, v) for k, v in scope.get("headers", ()) if k != self.request_id_header]
        given = next((v for k, v in scope.get("headers", ()) if k == self.request_id_header), None)
        rid = self.request_id(given.decode("latin-1") if given is not None else None)
        scope["headers"] = [*headers, (self.request_id_header, rid.encode("latin-1"))]
        return rid
