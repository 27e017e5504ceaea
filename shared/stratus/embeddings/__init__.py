"""Text embedders behind one interface; the model name travels with every vector.

`get_embedder(name)` is the entry point: the offline MiniLM model, or a hosted one (Bedrock Titan or Cohere,
OpenAI) named as in stratus.embeddings.models (`amazon.titan-embed-text-v2:0/512`). Hosted adapters classify
their failures with the providers' taxonomy (stratus.provider_errors), as the chat providers do.

May import: stratus.config, stratus.aws, stratus.provider_errors/provider_http. Never stratus.llm (it
imports this package) nor stratus_tools; no cycles (pyproject.toml, [tool.importlinter]).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from stratus.config import Settings
    from stratus.embeddings.models import EmbedInput
    from stratus.provider_errors import ProviderError

# Asymmetric models embed a question differently from the passage that answers it (Cohere's input_type);
# symmetric ones (MiniLM, Titan, OpenAI) ignore the kind.
EmbedKind = Literal["document", "query"]
OFFLINE_MODELS = ("all-MiniLM-L6-v2-int8", "paraphrase-MiniLM-L3-v2")

# Set while an embedding runs beside other CPU work of the same request (hybrid retrieval's dense side):
# offline encoders then run on one thread, not on every core (stratus.embeddings.onnx_encoder).
_alongside: ContextVar[bool] = ContextVar("stratus_embed_alongside", default=False)


@contextmanager
def alongside_other_work() -> Iterator[None]:
    token = _alongside.set(True)
    try:
        yield
    finally:
        _alongside.reset(token)


def runs_alongside() -> bool:
    return _alongside.get()


class Embedder(Protocol):
    model_name: str
    dimensions: int
    max_tokens: int

    def embed(self, texts: list[str], *, kind: EmbedKind = "document") -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the model's tokens (without special tokens), for budgeted chunking."""
        ...


@dataclass
class Embedded:
    """Vectors with what they cost: the tokens billed, and the texts that could not be embedded (their
    rows are zeros) with the reason for each."""

    vectors: np.ndarray
    input_tokens: int
    failures: dict[int, ProviderError] = field(default_factory=dict)


def embed_metered(embedder: Embedder, texts: Sequence[EmbedInput], *, kind: EmbedKind = "document") -> Embedded:
    """Embed and say how many tokens were billed: a hosted model reports its own count and per-text
    failures; an offline model costs nothing and counts with its own tokenizer. Token ids (EmbedInput)
    are for the hosted models that take them."""
    from stratus.embeddings.hosted import HostedEmbedder

    if isinstance(embedder, HostedEmbedder):
        return embedder.embed_all(texts, kind=kind)
    strings = [t for t in texts if isinstance(t, str)]
    if len(strings) != len(texts):
        raise ValueError(f"{embedder.model_name} takes text, not token ids")
    return Embedded(embedder.embed(strings, kind=kind), sum(embedder.count_tokens(t) for t in strings))


def is_billed(embedder: Embedder) -> bool:
    """Whether a provider bills this embedder's calls (a hosted model; not an offline or custom one)."""
    from stratus.embeddings.hosted import HostedEmbedder

    return isinstance(embedder, HostedEmbedder)


def is_hosted(model_name: str) -> bool:
    return model_name not in OFFLINE_MODELS and model_name not in _registered


# Models added by name at run time (a deployment's own adapter, or a test's second model): built once each.
_registered: dict[str, Callable[[], Embedder]] = {}


def register(model_name: str, factory: Callable[[], Embedder]) -> None:
    _registered[model_name] = functools.cache(factory)


def unregister(model_name: str) -> None:
    _registered.pop(model_name, None)


def get_embedder(model_name: str, settings: Settings | None = None) -> Embedder:
    """The embedder for a model id, built once: an offline model per process, a hosted one per process and
    settings (its keys, region, endpoints, retries and pace come from them; default: the process's)."""
    if model_name in _registered:
        return _registered[model_name]()
    if model_name in OFFLINE_MODELS:
        return _offline(model_name)
    from stratus.config import get_settings
    from stratus.embeddings.models import UnknownModel, canonical_id

    try:
        canonical = canonical_id(model_name)
    except UnknownModel as err:
        raise ValueError(f"{err} (STRATUS_EMBEDDING_MODEL; known: {', '.join(known_models())})") from None
    return _hosted(canonical, settings or get_settings())


@functools.cache
def _offline(model_name: str) -> Embedder:
    if model_name == "all-MiniLM-L6-v2-int8":
        from stratus.embeddings.minilm import MiniLMEmbedder

        return MiniLMEmbedder()
    if model_name == "paraphrase-MiniLM-L3-v2":  # optional offline model: faster, weaker (docs/retrieval.md)
        from stratus.embeddings.paraphrase_minilm import ParaphraseMiniLML3Embedder

        return ParaphraseMiniLML3Embedder()
    raise ValueError(f"unknown embedding model {model_name!r} (STRATUS_EMBEDDING_MODEL)")


@functools.cache
def _hosted(model_name: str, settings: Settings) -> Embedder:  # one pacer and client set per model
    return hosted_embedder(model_name, settings)


def hosted_embedder(model_name: str, settings: Settings | None = None) -> Embedder:
    """A hosted model's adapter, configured from the settings (keys, region, endpoints, retries, pace)."""
    from stratus.breaker import CircuitBreaker
    from stratus.config import get_settings
    from stratus.embeddings.hosted import HostedEmbedder, Pacer
    from stratus.embeddings.models import parse_model_id

    s = settings or get_settings()
    if parse_model_id(model_name)[0].provider == "openai":
        from stratus.embeddings.openai_embed import openai_call

        call = openai_call(model_name, s)
    else:
        from stratus.embeddings.bedrock import bedrock_call

        call = bedrock_call(model_name, s)
    return HostedEmbedder(model_name, call, retries=s.retry_attempts, base_backoff_s=s.retry_base_backoff_s,
                          max_backoff_s=s.retry_max_backoff_s, concurrency=s.embedding_concurrency,
                          pacer=Pacer(s.embedding_requests_per_second),
                          breaker=CircuitBreaker(s.breaker_failures, s.breaker_cooldown_s))


def known_models() -> list[str]:
    from stratus.embeddings.models import HOSTED

    return [*OFFLINE_MODELS, *(f"{m.model}/{m.default_dimensions}" for m in HOSTED.values())]
