"""The interface every provider adapter implements, and the lazy registry of adapters."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from typing import Protocol

from stratus.llm.catalog import Deployment
from stratus.llm.types import ChatRequest, Completion, StreamChunk

# provider name -> "module:class"; modules are imported on first use (cold start stays light).
_ADAPTERS = {
    "openai": "stratus.llm.providers.openai_chat:OpenAIProvider",
    "anthropic": "stratus.llm.providers.anthropic_messages:AnthropicProvider",
    "bedrock": "stratus.llm.providers.bedrock_converse:BedrockProvider",
    "offline": "stratus.llm.providers.offline:OfflineProvider",
}
_instances: dict[str, Provider] = {}
_lock = threading.Lock()


class Provider(Protocol):
    """Messages in, text (and tool calls) out, with usage. Failures raise llm.errors.ProviderError
    subclasses, classified so the router can retry or fall back; nothing else escapes an adapter."""

    name: str

    def complete(self, request: ChatRequest, deployment: Deployment, *, timeout: float) -> Completion: ...

    def stream(self, request: ChatRequest, deployment: Deployment, *, timeout: float) -> Iterator[StreamChunk]: ...


def get_provider(name: str) -> Provider:
    """The (process-wide, reused across warm invocations) adapter for a provider name."""
    with _lock:
        if name not in _instances:
            if name not in _ADAPTERS:
                raise KeyError(f"unknown provider {name!r}; known: {', '.join(sorted(_ADAPTERS))}")
            module, _, cls = _ADAPTERS[name].partition(":")
            _instances[name] = getattr(importlib.import_module(module), cls)()
        return _instances[name]


def reset_providers() -> None:
    """Drop cached adapters (and their HTTP clients): tests and settings changes."""
    with _lock:
        _instances.clear()
