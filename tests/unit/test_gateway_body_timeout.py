"""A client that declares more body than it sends is answered 408 once the read timeout passes, instead of
holding the connection (and a worker) for as long as it likes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from stratus.gateway.app import GatewayMiddleware


def _call(middleware: GatewayMiddleware, receive: Any) -> list[dict[str, Any]]:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
             "headers": [(b"content-length", b"100"), (b"content-type", b"application/json")]}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent


def test_a_body_that_never_arrives_is_a_408_in_the_openai_shape() -> None:
    reached: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    async def receive() -> dict[str, Any]:
        if not reached and not getattr(receive, "sent", False):
            receive.sent = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b'{"model": ', "more_body": True}
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    sent = _call(GatewayMiddleware(app, max_body_bytes=4096, body_timeout_s=0.2), receive)
    assert sent[0]["status"] == 408 and not reached  # the route never ran
    error = json.loads(sent[1]["body"])["error"]
    assert error["code"] == "request_timeout" and "0.2 s" in error["message"]


def test_a_whole_body_in_time_reaches_the_app() -> None:
    got: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x" * 100, "more_body": False}

    sent = _call(GatewayMiddleware(app, max_body_bytes=4096, body_timeout_s=0.2), receive)
    assert sent[0]["status"] == 200 and got == [b"x" * 100]
