"""EventBridge schedules, locally: moto stores scheduled rules but never fires them, so the local stack
runs each `rate(...)` schedule of template.yaml itself, invoking the function through the local Lambda
as EventBridge would, with a Scheduled Event payload. The first run is one period after the start, as on
AWS; a run that fails is logged and the schedule goes on."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


def scheduled_event(rule: str, region: str, account_id: str) -> dict[str, Any]:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": account_id, "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "resources": [f"arn:aws:events:{region}:{account_id}:rule/{rule}"], "detail": {}}


class ScheduleRunner:
    def __init__(self, schedule: Any, lambda_client: Any, region: str, account_id: str) -> None:
        self.schedule = schedule
        self._lambda = lambda_client
        self._region = region
        self._account = account_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"schedule-{schedule.logical_id}", daemon=True)
        self.runs = 0

    def start(self) -> ScheduleRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def run_once(self) -> dict[str, Any]:
        """Invoke the function now, as one scheduled run; returns its result (or raises on its error)."""
        event = scheduled_event(self.schedule.logical_id, self._region, self._account)
        response = self._lambda.invoke(FunctionName=self.schedule.function_name, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"null")
        self.runs += 1
        if response.get("FunctionError"):
            raise RuntimeError(f"{self.schedule.logical_id} failed: {payload}")
        return payload

    def _loop(self) -> None:
        while not self._stop.wait(self.schedule.period_s):
            try:
                result = self.run_once()
                log.info("scheduled %s: %s", self.schedule.logical_id, result)
            except Exception:  # noqa: BLE001 - a failed run is logged; the next one comes on schedule
                log.exception("scheduled run of %s failed", self.schedule.logical_id)
