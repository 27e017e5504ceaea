"""The hosted embedding models Stratus can call, with the limits their APIs publish, and how a model id
names one model at one dimension.

A model id is the provider's own id, then `/` and the output dimension: `amazon.titan-embed-text-v2:0/512`,
`cohere.embed-english-v3/1024`, `text-embedding-3-small/1536`. The dimension is part of the id because it
is part of a vector's identity: vectors of one model at two dimensions do not compare, and each pair gets
its own index. Without `/N` the model's default dimension is meant; the canonical id always carries it.

Prices are not here: they sit with the chat models' prices in stratus/llm/models.yaml (`embedding_prices`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

# One input: a text, or (OpenAI's models only: `takes_token_ids`) the ids of its tokens in the model's tokenizer.
EmbedInput = str | list[int]
# An adapter's single API call: inputs and their kind -> the vectors and the tokens billed (None: not said).
Call = Callable[[list[EmbedInput], Literal["document", "query"]], tuple[np.ndarray, int | None]]
Provider = Literal["bedrock-titan", "bedrock-cohere", "openai"]


@dataclass(frozen=True)
class HostedModel:
    model: str  # the provider's id, as sent on the wire
    provider: Provider
    dimensions: tuple[int, ...] | range  # the sizes the API accepts
    default_dimensions: int
    max_input_tokens: int  # per text, in the provider's own tokens
    max_input_chars: int | None  # per text, where the API also limits characters
    max_texts_per_call: int
    max_tokens_per_call: int | None  # all texts of one call together (OpenAI); None: only per text

    @property
    def takes_token_ids(self) -> bool:
        """Whether the API embeds token ids as well as text (OpenAI's does, in its models' tokenizer)."""
        return self.provider == "openai"


# Limits from each API's documentation: Titan Text Embeddings V2 takes one text of up to 8,192 tokens or
# 50,000 characters per InvokeModel; Cohere Embed v3 on Bedrock up to 96 texts of 2,048 characters each (512
# tokens); OpenAI's embeddings endpoint up to 2,048 inputs of 8,192 tokens, 300,000 tokens per request, for
# every model.
HOSTED: dict[str, HostedModel] = {m.model: m for m in (
    HostedModel("amazon.titan-embed-text-v2:0", "bedrock-titan", (256, 512, 1024), 1024, 8192, 50_000, 1, None),
    HostedModel("cohere.embed-english-v3", "bedrock-cohere", (1024,), 1024, 512, 2048, 96, None),
    HostedModel("cohere.embed-multilingual-v3", "bedrock-cohere", (1024,), 1024, 512, 2048, 96, None),
    HostedModel("text-embedding-3-small", "openai", range(1, 1537), 1536, 8192, None, 2048, 300_000),
    HostedModel("text-embedding-3-large", "openai", range(1, 3073), 3072, 8192, None, 2048, 300_000),
    # The previous generation, still many clients' default (LangChain's OpenAIEmbeddings): one size only.
    HostedModel("text-embedding-ada-002", "openai", (1536,), 1536, 8192, None, 2048, 300_000),
)}


class UnknownModel(ValueError):
    pass


def parse_model_id(model_id: str) -> tuple[HostedModel, int]:
    """(the model, the dimension) that an id names, or UnknownModel saying what is accepted."""
    base, _, dims = model_id.partition("/")
    spec = HOSTED.get(base)
    if spec is None:
        raise UnknownModel(f"unknown embedding model {model_id!r}")
    if not dims:
        return spec, spec.default_dimensions
    if not dims.isdigit() or int(dims) not in spec.dimensions:
        allowed = (f"1 to {spec.dimensions[-1]}" if isinstance(spec.dimensions, range)
                   else ", ".join(map(str, spec.dimensions)))
        raise UnknownModel(f"{base} has no dimension {dims!r} (it offers {allowed})")
    return spec, int(dims)


def canonical_id(model_id: str) -> str:
    spec, dims = parse_model_id(model_id)
    return f"{spec.model}/{dims}"
