"""A circuit breaker per deployment (a chat deployment, or a hosted embedding model), shared by every
request a warm process serves.

After `failures` consecutive provider-side failures (the classes with `trips`, stratus.llm.errors: 5xx,
overload, timeouts, no connection, broken answers) a deployment is skipped for `cooldown_s`; then one
request may try it (half-open): success closes the circuit, failure opens it for another cooldown. A
client's bad request, a rate limit or rejected credentials never count, so one caller's mistakes cannot
close a deployment to everyone else, and a deployment is only ever skipped for requests routed to it.

State lives in the process (a Lambda container), not in a shared store: every container sees the same
provider outage within `failures` requests, and a shared store would put a database round trip on every
attempt and let one container's network trouble (its own, not the provider's) open the circuit for all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _State:
    consecutive: int = 0
    open_until: float = 0.0
    trial_in_flight: bool = False


class CircuitBreaker:
    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def allow(self, name: str) -> bool:
        """May this deployment be tried now? Claims the half-open trial when the cooldown has passed."""
        with self._lock:
            state = self._states.get(name)
            if state is None or state.consecutive < self.failures:
                return True
            if self.clock() < state.open_until or state.trial_in_flight:
                return False
            state.trial_in_flight = True
            return True

    def success(self, name: str) -> None:
        with self._lock:
            self._states.pop(name, None)

    def failure(self, name: str) -> None:
        with self._lock:
            state = self._states.setdefault(name, _State())
            state.consecutive += 1
            state.trial_in_flight = False
            if state.consecutive >= self.failures:
                state.open_until = self.clock() + self.cooldown_s

    def retry_after(self, name: str) -> float | None:
        """Seconds left of an open circuit's cooldown (None when it is closed or may be tried)."""
        with self._lock:
            state = self._states.get(name)
            if not state or state.consecutive < self.failures:
                return None
            left = state.open_until - self.clock()
            return left if left > 0 else None

    def is_open(self, name: str) -> bool:
        with self._lock:
            state = self._states.get(name)
            return bool(state and state.consecutive >= self.failures and self.clock() < state.open_until)
