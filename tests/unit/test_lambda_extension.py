"""The span-flushing extension's event loop and the handler wrapper's hand-off to it, without sockets: the
Extensions API's replies are scripted, sleeps are recorded instead of slept."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from stratus import lambda_extension, spans

pytestmark = pytest.mark.unit


class _Ended(Exception):
    """The script ran out: the loop asked once more than the test expected."""


def _extension(replies: list[tuple[int, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
               ) -> tuple[lambda_extension.FlushAfterResponse, list[str], list[float]]:
    flushed: list[str] = []
    slept: list[float] = []
    ext = lambda_extension.FlushAfterResponse("127.0.0.1:9", lambda: flushed.append("flush") is None)
    script = iter(replies)

    def call(method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        assert (method, path) == ("GET", f"{lambda_extension.API}/event/next")
        try:
            status, event = next(script)
        except StopIteration:
            raise _Ended from None
        return status, {}, event

    monkeypatch.setattr(ext, "_call", call)
    monkeypatch.setattr(lambda_extension.time, "sleep", slept.append)
    return ext, flushed, slept


def test_an_error_reply_is_logged_and_retried_after_a_growing_pause_not_taken_for_shutdown(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Given the API answers /event/next with errors (no eventType), then an invocation, then SHUTDOWN
    errors = [(403, {"errorMessage": "bad id"})] + [(500, {})] * 6
    invoke = (200, {"eventType": "INVOKE", "deadlineMs": (time.time() + 5) * 1000})
    ext, flushed, slept = _extension([*errors, invoke, (500, {}), (200, {"eventType": "SHUTDOWN"})], monkeypatch)
    ext.handler_done()  # the invocation's handler has already returned

    # When the loop runs
    with caplog.at_level(logging.WARNING, logger=lambda_extension.__name__):
        ext._run()  # returns on SHUTDOWN

    # Then each error paused (50 ms doubling to 1 s, reset by a good reply), was logged and flushed nothing
    assert slept == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 0.05]
    assert flushed == ["flush", "flush"]  # once for the invocation, once on SHUTDOWN
    warned = [r.getMessage() for r in caplog.records if "/event/next" in r.getMessage()]
    assert len(warned) == 8 and "403" in warned[0] and "500" in warned[1]


def test_a_failed_flush_on_shutdown_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    ext, _, slept = _extension([(200, {"eventType": "SHUTDOWN"})], monkeypatch)

    def broken() -> bool:
        raise RuntimeError("exporter down")

    ext.flush = broken
    with caplog.at_level(logging.WARNING, logger=lambda_extension.__name__):
        ext._run()
    assert slept == [] and any("flushing spans" in r.getMessage() for r in caplog.records)


class _Extension:
    def __init__(self) -> None:
        self.done = 0

    def handler_done(self) -> None:
        self.done += 1


@pytest.mark.parametrize("raises", [False, True])
def test_the_handler_tells_the_extension_it_is_done_even_with_tracing_off(raises: bool) -> None:
    from aws_lambda_powertools import Logger, Metrics

    from stratus.observability import Observability

    # Given a registered extension while tracing is off (no provider)
    spans.use(None)
    assert not spans.otel_enabled()
    extension = _Extension()
    obs = Observability("retrieve", logger=Logger(service="retrieve"), metrics=Metrics(namespace="T"),
                        emit_metrics=False, extension=extension)

    def handler(event: Any, context: Any) -> dict[str, bool]:
        if raises:
            raise ValueError("bad event")
        return {"ok": True}

    # When the handler returns (or raises)
    wrapped = obs.handler()(handler)
    if raises:
        with pytest.raises(ValueError, match="bad event"):
            wrapped({}, None)
    else:
        assert wrapped({}, None) == {"ok": True}
    # Then the extension was released at once rather than waiting for the deadline
    assert extension.done == 1
