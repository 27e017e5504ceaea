"""Cost of a call from its token usage and the deployment's price table (USD per million tokens)."""

from __future__ import annotations

from stratus.llm.catalog import Price
from stratus.llm.types import Usage

_PER = 1_000_000


def cost_usd(price: Price, usage: Usage) -> float:
    """Uncached input at the input price, cached input at the cached price, output at the output price."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    total = ((usage.input_tokens - cached) * price.input + cached * cached_price
             + usage.output_tokens * price.output) / _PER
    return round(total, 10)
