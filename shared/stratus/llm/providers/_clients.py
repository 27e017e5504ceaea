"""SDK clients for key-authenticated providers: one per endpoint and key, reused by a warm container."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from stratus.llm import errors as e
from stratus.llm.catalog import Deployment

Client = TypeVar("Client")


class SdkClients(Generic[Client]):
    def __init__(self, sdk_client: Callable[..., Client], key_setting: str) -> None:
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
                                                    timeout=deployment.timeout_s)
            return self.by_key[key]
