"""POST /v1/embeddings: the local MiniLM model (the one retrieval uses) and the hosted models whose provider
is configured (Bedrock Titan and Cohere, OpenAI text-embedding-3), rate limited, costed into the tenant's
budget and traced.

`model` is a hosted model's id (`text-embedding-3-small`) with `dimensions` choosing its size, or the
Stratus id that names both (`text-embedding-3-small/512`); a size the model does not offer is a 400 naming
`dimensions`. Admission reserves the worst case (the local token count, doubled: the provider's tokenizer
is not ours); the response's usage and the tenant's spend are what the provider billed. Token arrays (ids
in OpenAI's tokenizer) go to OpenAI's models as they came, and are a 400 naming `input` for the others.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from stratus.gateway import errors
from stratus.gateway.context import admit_or_raise, context_of, finish_task
from stratus.gateway.deps import Conn, require
from stratus.gateway.openai_models import EmbeddingRequest

if TYPE_CHECKING:
    from stratus.embeddings.models import EmbedInput

router = APIRouter(prefix="/v1", tags=["inference"], responses=errors.responses(*errors.AUTHENTICATED, 404, 429))
Caller = Annotated[Any, Depends(require("inference"))]
MAX_INPUTS = 2048  # OpenAI's per-request limit
RESERVE_FACTOR = 2  # worst case of the provider's token count over the local one, for the budget reservation


def embedding_model_ids(settings: Any) -> list[str]:
    """The ids callers may name: the configured model and its public name without the quantisation tag,
    and each hosted model whose provider this deployment can call."""
    name = settings.embedding_model
    return sorted({name, name.removesuffix("-int8"), *_hosted_ids(settings)})


def _hosted_ids(settings: Any) -> list[str]:
    from stratus.embeddings.models import HOSTED

    openai = settings.openai_api_key is not None or bool(settings.provider_secret_arn)
    bedrock = settings.bedrock_enabled or settings.env != "local"  # IAM credentials on AWS
    return [m.model for m in HOSTED.values() if (openai if m.provider == "openai" else bedrock)]


def resolve(model: str, dimensions: int | None, settings: Any) -> str:
    """The embedder id for a request's model and dimensions; 404 naming `model` or 400 naming `dimensions`."""
    from stratus.embeddings import get_embedder
    from stratus.embeddings.models import UnknownModel, canonical_id

    base, _, size = model.partition("/")
    if model in (settings.embedding_model, settings.embedding_model.removesuffix("-int8")) and not size:
        native = get_embedder(settings.embedding_model, settings).dimensions
        if dimensions not in (None, native):
            raise errors.invalid_request(f"dimensions: {model} has {native} dimensions; other sizes are not "
                                         "supported", param="dimensions", code="unsupported_value")
        return str(settings.embedding_model)
    if base not in _hosted_ids(settings) and model != settings.embedding_model:
        raise errors.not_found(f"model {model!r} is not an embedding model here; use one of "
                               f"{embedding_model_ids(settings)}", param="model", code="model_not_found")
    if size and dimensions is not None and str(dimensions) != size:
        raise errors.invalid_request(f"dimensions: {dimensions} contradicts the model id {model!r}",
                                     param="dimensions", code="unsupported_value")
    try:
        return canonical_id(f"{base}/{dimensions}" if dimensions is not None else model)
    except UnknownModel as err:
        raise errors.invalid_request(f"dimensions: {err}", param="dimensions", code="unsupported_value") from None


def takes_token_ids(model_id: str) -> bool:
    from stratus.embeddings import is_hosted
    from stratus.embeddings.models import parse_model_id

    return is_hosted(model_id) and parse_model_id(model_id)[0].takes_token_ids


@router.post("/embeddings", summary="Create embeddings")
def embeddings(body: EmbeddingRequest, request: Request, who: Caller, conn: Conn) -> Any:
    from stratus.embeddings import embed_metered, get_embedder, is_hosted
    from stratus.llm.pricing import embedding_cost_usd

    s, ctx = request.app.state.settings, context_of(request)
    model_id = resolve(body.model, body.dimensions, s)
    token_ids = body.token_ids(MAX_INPUTS)
    if token_ids is not None and not takes_token_ids(model_id):
        body.texts(MAX_INPUTS)  # the 400 naming input
    texts: list[EmbedInput] = list(token_ids) if token_ids is not None else list(body.texts(MAX_INPUTS))
    embedder = get_embedder(model_id, s)
    counts = [len(t) if isinstance(t, list) else embedder.count_tokens(t) for t in texts]
    if not is_hosted(model_id):  # the local tokenizer is this model's own: its limit is exact
        for i, n in enumerate(counts):
            if n > embedder.max_tokens:  # (text only: token ids reach hosted models alone)
                raise errors.invalid_request(f"input.{i} has {n} tokens; this model reads at most "
                                             f"{embedder.max_tokens}", param="input", code="input_too_long")
    estimate = sum(counts) * (RESERVE_FACTOR if is_hosted(model_id) else 1)
    admit_or_raise(conn, ctx, who, estimated_tokens=estimate,
                   max_cost_usd=embedding_cost_usd(model_id, estimate, s), settings=s)
    t = time.perf_counter()
    result = embed_metered(embedder, texts)
    ctx.step("embed", t)
    tokens = result.input_tokens
    cost = embedding_cost_usd(model_id, tokens, s)
    # What the provider billed is spent even when a text failed: the reservation settles at that.
    ctx.spent_tokens, ctx.spent_usd = tokens, cost
    ctx.trace.update(model_alias=body.model, deployment=model_id, provider=getattr(embedder, "provider", "offline"),
                     input_tokens=tokens, output_tokens=0, cost_usd=cost)
    if result.failures:
        i, err = min(result.failures.items())
        raise errors.invalid_request(f"input.{i}: {err.message}", param="input", code="invalid_input")
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(result.vectors)]
    return JSONResponse({"object": "list", "data": data, "model": body.model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, background=finish_task(ctx))


def _encode(vector: Any, encoding: str) -> Any:
    if encoding == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return [round(float(x), 8) for x in vector]
