"""SDK clients for key-authenticated providers (OpenAI, Anthropic): one per endpoint and key, reused by a
warm container, and the relay of their streams, which the two SDKs shape alike."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from stratus.llm import errors as e
from stratus.llm.catalog import Deployment
from stratus.llm.providers._classify import ErrorTypes, malformed
from stratus.llm.types import StreamChunk

Client = TypeVar("Client")
TimeoutT = TypeVar("TimeoutT")

# A connect that takes longer than this will not succeed (no egress, a dead endpoint): give up early so
# the router's fallback still fits the request's deadline. Reads keep the whole attempt's timeout.
CONNECT_TIMEOUT_S = 2.0


def attempt_timeout(timeout_type: Callable[..., TimeoutT], timeout: float) -> TimeoutT:
    """The SDK's Timeout (openai.Timeout / anthropic.Timeout) for one attempt: a short connect phase."""
    return timeout_type(timeout, connect=min(timeout, CONNECT_TIMEOUT_S))


class SdkClients(Generic[Client]):
    def __init__(self, sdk_client: Callable[..., Client], key_setting: str,
                 timeout_type: Callable[..., object]) -> None:
        self._timeout_type = timeout_type
        self._sdk_client = sdk_client  # openai.OpenAI or anthropic.Anthropic: the same constructor keywords
        self._key_setting = key_setting
        self.by_key: dict[tuple[str | None, str], Client] = {}
        self._lock = threading.Lock()

    def get(self, deployment: Deployment) -> Client:
        if deployment.api_key is None:
            raise e.AuthenticationFailed(f"{deployment.name}: no API key configured ({self._key_setting})",
                                         deployment=deployment.name, field="api_key")
        key = (deployment.base_url, deployment.api_key.get_secret_value())
        with self._lock:
            if key not in self.by_key:  # one client (and connection pool) per endpoint and key
                # SDK retries off: the router retries and falls back, and counts every attempt.
                self.by_key[key] = self._sdk_client(api_key=key[1], base_url=key[0], max_retries=0,
                                                    timeout=attempt_timeout(self._timeout_type,
                                                                            deployment.timeout_s))
            return self.by_key[key]


class Assembler(Protocol):
    """A provider's stream events folded into chunks (each adapter's StreamAssembler)."""

    def feed(self, data: dict[str, Any]) -> StreamChunk | None: ...

    def final(self) -> StreamChunk: ...


def relay_stream(events: Any, assembler: Assembler, deployment: Deployment, *, broken: ErrorTypes,
                 caught: ErrorTypes, classify: Callable[[Exception, Deployment], e.ProviderError]
                 ) -> Iterator[StreamChunk]:
    """The chunks of an SDK stream (a context manager over events with `to_dict`), then the assembler's
    final one. A `broken` transport mid-stream (timeouts included) is StreamInterrupted; any other
    `caught` failure is classified like the request's own."""
    try:
        with events:
            for event in events:
                data = event.to_dict(mode="json") if hasattr(event, "to_dict") else event
                if not isinstance(data, dict):
                    raise malformed(deployment.name, "a stream event is not an object")
                chunk = assembler.feed(data)
                if chunk is not None:
                    yield chunk
    except broken as err:
        raise e.StreamInterrupted(f"{deployment.name}: stream broke: {err}", deployment=deployment.name) from err
    except caught as err:
        raise classify(err, deployment) from err
    yield assembler.final()
