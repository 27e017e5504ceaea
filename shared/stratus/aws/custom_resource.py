"""CloudFormation custom resources backed by Lambda: the request handling and the answer to CloudFormation.

    @custom_resource(physical_id="stratus-database-migrations")
    def handler(event, context) -> dict[str, str]:   # runs on Create and Update; returns the resource's Data
        ...

CloudFormation waits for an answer PUT to the request's presigned `ResponseURL`, and a resource that never
gets one holds the stack until its ServiceTimeout. So the decorated handler always answers: SUCCESS with the
returned data, FAILED with the error (and the log stream to read) when the work raised, and FAILED shortly
before the function's own timeout if the work is still running then. Delete answers SUCCESS without running
the work (unless `on_delete` is given). Exactly one answer is sent per request. urllib only: no dependency.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SUCCESS, FAILED = "SUCCESS", "FAILED"
_REASON_LIMIT = 3000  # the whole answer must stay under 4 KiB
_DEADLINE_MARGIN_S = 10.0  # answer FAILED this long before Lambda would end the invocation

Work = Callable[[dict[str, Any], Any], dict[str, Any] | None]


def response_body(event: dict[str, Any], status: str, *, physical_id: str, reason: str = "",
                  data: dict[str, Any] | None = None) -> bytes:
    if status not in (SUCCESS, FAILED):
        raise ValueError(f"status must be SUCCESS or FAILED, not {status!r}")
    return json.dumps({
        "Status": status,
        "Reason": reason[:_REASON_LIMIT],
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": {str(k): str(v) for k, v in (data or {}).items()},
    }).encode()


def send(url: str, body: bytes, *, attempts: int = 4, timeout_s: float = 15.0, backoff_s: float = 1.0) -> None:
    """PUT the answer to the presigned URL, retrying transient failures. The URL is signed without a content
    type, so the request carries an empty one."""
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=body, method="PUT",
                                         headers={"Content-Type": "", "Content-Length": str(len(body))})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - CloudFormation's URL
                if 200 <= response.status < 300:
                    return
                error: Exception = RuntimeError(f"HTTP {response.status}")
        except Exception as err:  # noqa: BLE001 - retried, then raised
            error = err
        log.warning("answering CloudFormation failed (attempt %d of %d): %s", attempt, attempts, error)
        if attempt == attempts:
            raise RuntimeError(f"could not answer CloudFormation: {error}") from error
        time.sleep(backoff_s * 2 ** (attempt - 1))


class _Answer:
    """Sends one answer per request, whichever of the work and the deadline timer comes first."""

    def __init__(self, event: dict[str, Any], physical_id: str) -> None:
        self.event, self.physical_id = event, physical_id
        self._lock = threading.Lock()
        self.sent: str | None = None

    def __call__(self, status: str, reason: str = "", data: dict[str, Any] | None = None) -> bool:
        with self._lock:
            if self.sent is not None:
                return False
            self.sent = status
        body = response_body(self.event, status, physical_id=self.physical_id, reason=reason, data=data)
        try:
            send(self.event["ResponseURL"], body)
        except RuntimeError:
            log.exception("no answer reached CloudFormation for %s", self.event.get("LogicalResourceId"))
        return True


def custom_resource(physical_id: str, *, on_delete: Work | None = None) -> Callable[[Work], Callable[..., None]]:
    """Decorates the work of a custom resource (see the module's docstring). `physical_id` is fixed, so an
    update never replaces the resource (and never asks for a delete of the old one)."""

    def decorate(work: Work) -> Callable[..., None]:
        @functools.wraps(work)
        def handler(event: dict[str, Any], context: Any) -> None:
            answer = _Answer(event, event.get("PhysicalResourceId") or physical_id)
            where = f" (log stream {getattr(context, 'log_stream_name', '?')})"
            remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
            timer = None
            if callable(remaining_ms):
                delay = max(remaining_ms() / 1000 - _DEADLINE_MARGIN_S, 1.0)
                timer = threading.Timer(delay, answer, args=(FAILED, f"timed out before finishing{where}"))
                timer.daemon = True
                timer.start()
            kind = event.get("RequestType")
            log.info("%s %s", kind, event.get("LogicalResourceId"))
            try:
                if kind == "Delete":
                    data = on_delete(event, context) if on_delete is not None else None
                elif kind in ("Create", "Update"):
                    data = work(event, context)
                else:
                    raise ValueError(f"unknown RequestType {kind!r}")
            except Exception as err:  # noqa: BLE001 - CloudFormation gets the error instead of a hang
                log.exception("%s %s failed", kind, event.get("LogicalResourceId"))
                answer(FAILED, f"{type(err).__name__}: {err}{where}")
            else:
                answer(SUCCESS, "", data)
            finally:
                if timer is not None:
                    timer.cancel()

        return handler

    return decorate
