"""Provider adapters. Each module holds one provider; SDKs are imported when a deployment first uses them."""

from __future__ import annotations

from stratus.llm.providers.base import Provider, get_provider

__all__ = ["Provider", "get_provider"]
