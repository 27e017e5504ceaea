"""Cost of a call from its token usage and the deployment's price table (USD per million tokens); cost of
embeddings from the catalog's `embedding_prices`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stratus.llm.catalog import EmbeddingPrices, Price
from stratus.llm.types import Usage

if TYPE_CHECKING:
    from stratus.config import Settings

_PER = 1_000_000


def cost_usd(price: Price, usage: Usage) -> float:
    """Uncached input at the input price, cached input at the cached price, output at the output price."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    total = ((usage.input_tokens - cached) * price.input + cached * cached_price
             + usage.output_tokens * price.output) / _PER
    return round(total, 10)


def embedding_cost_usd(model_name: str, tokens: int, settings: Settings | None = None) -> float:
    """What `tokens` input tokens of an embedding model cost (`…/512`: the price of the model at any size).
    The offline models cost nothing; a hosted model missing from the price table is a configuration error,
    never silently free."""
    from stratus.embeddings import is_hosted

    if not is_hosted(model_name):
        return 0.0
    base = model_name.rsplit("/", 1)[0]
    path = Path((settings or _settings()).models_file)
    prices = _embedding_prices(path)
    if base not in prices:
        raise ValueError(f"{path}: embedding_prices has no price for {base!r}")
    return round(max(0, tokens) * prices[base] / _PER, 10)


def _settings() -> Settings:
    from stratus.config import get_settings

    return get_settings()


@functools.cache
def _embedding_prices(path: Path) -> dict[str, float]:
    """The catalog file's price table alone: no credentials, no secret read (ingestion uses it)."""
    import yaml
    from pydantic import TypeAdapter

    data: Any = yaml.safe_load(path.read_text()) or {}
    section = data.get("embedding_prices") if isinstance(data, dict) else None
    return TypeAdapter(EmbeddingPrices).validate_python(section or {})
