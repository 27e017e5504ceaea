"""GatewayServer: uvicorn in a thread on a loopback port, streaming for real, stopping promptly."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from stratus_tools.local.server import GatewayServer, ServerError


def _app(release: threading.Event | None = None) -> Starlette:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def stream(request: object) -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            # The second event waits until the client has seen the first: a buffering server never
            # delivers the first, so the client's read times out instead.
            while release is not None and not release.is_set():
                await asyncio.sleep(0.01)
            yield b"data: second\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/hello", hello), Route("/stream", stream)])


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def test_port_zero_picks_a_free_port_serves_and_closes_it_on_stop() -> None:
    server = GatewayServer(_app()).start()
    try:
        port = server.port
        assert port and server.url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{server.url}/hello", timeout=5) as response:  # noqa: S310
            assert response.read() == b"hello"
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 5
    assert not server.running and not _port_open(port)
    server.stop()  # idempotent


def test_a_streamed_response_arrives_event_by_event() -> None:
    release = threading.Event()
    with GatewayServer(_app(release)) as server:
        with urllib.request.urlopen(f"{server.url}/stream", timeout=5) as response:  # noqa: S310
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.readline() == b"data: first\n"
            release.set()
            assert response.read().split() == [b"data:", b"second"]


def test_stop_does_not_wait_forever_for_an_open_stream() -> None:
    release = threading.Event()  # never set: the stream would stay open forever
    server = GatewayServer(_app(release), graceful_shutdown_s=1).start()
    response = urllib.request.urlopen(f"{server.url}/stream", timeout=10)  # noqa: S310
    try:
        assert response.readline() == b"data: first\n"
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 6
        assert not server.running
    finally:
        release.set()
        with contextlib.suppress(Exception):
            response.close()


def test_a_busy_port_is_refused_with_the_port_named() -> None:
    with GatewayServer(_app()) as first:
        with pytest.raises(ServerError, match=f"127.0.0.1:{first.port}"):
            GatewayServer(_app(), port=first.port).start()


def test_an_app_whose_startup_fails_is_reported() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield  # pragma: no cover

    server = GatewayServer(Starlette(lifespan=lifespan))
    with pytest.raises(ServerError, match="stopped during startup"):
        server.start()
    assert not server.running


def test_a_port_outside_the_tcp_range_names_the_argument() -> None:
    with pytest.raises(ValueError, match="port: 70000"):
        GatewayServer(_app(), port=70000)


def test_the_url_of_a_stopped_server_is_an_error() -> None:
    with pytest.raises(ServerError, match="not running"):
        _ = GatewayServer(_app()).url
