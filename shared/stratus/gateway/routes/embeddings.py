"""POST /v1/embeddings with the local MiniLM model (the one retrieval uses), rate limited and traced."""

from __future__ import annotations

import base64
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from stratus.gateway import errors
from stratus.gateway.context import admit_or_raise, context_of, finish_task
from stratus.gateway.deps import Conn, require
from stratus.gateway.openai_models import EmbeddingRequest

router = APIRouter(prefix="/v1", tags=["inference"], responses=errors.responses(*errors.AUTHENTICATED, 404, 429))
Caller = Annotated[Any, Depends(require("inference"))]
MAX_INPUTS = 2048  # OpenAI's per-request limit


def embedding_model_ids(settings: Any) -> list[str]:
    """The ids callers may name: the configured model and its public name without the quantisation tag."""
    name = settings.embedding_model
    return sorted({name, name.removesuffix("-int8")})


@router.post("/embeddings", summary="Create embeddings")
def embeddings(body: EmbeddingRequest, request: Request, who: Caller, conn: Conn) -> Any:
    from stratus.embeddings import get_embedder

    s, ctx = request.app.state.settings, context_of(request)
    if body.model not in embedding_model_ids(s):
        raise errors.not_found(f"model {body.model!r} is not an embedding model here; use one of "
                               f"{embedding_model_ids(s)}", param="model", code="model_not_found")
    texts = body.texts(MAX_INPUTS)
    embedder = get_embedder(s.embedding_model)
    counts = [embedder.count_tokens(t) for t in texts]
    for i, n in enumerate(counts):
        if n > embedder.max_tokens:
            raise errors.invalid_request(f"input.{i} has {n} tokens; this model reads at most {embedder.max_tokens}",
                                         param="input", code="input_too_long")
    tokens = sum(counts)
    admit_or_raise(conn, ctx, who, estimated_tokens=tokens, max_cost_usd=0.0, settings=s)
    t = time.perf_counter()
    vectors = embedder.embed(texts)
    ctx.step("embed", t)
    ctx.spent_tokens = tokens
    ctx.trace.update(model_alias=body.model, input_tokens=tokens, output_tokens=0, cost_usd=0.0)
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)]
    return JSONResponse({"object": "list", "data": data, "model": body.model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, background=finish_task(ctx))


def _encode(vector: Any, encoding: str) -> Any:
    if encoding == "base64":  # little-endian float32, as OpenAI sends it
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return [round(float(x), 8) for x in vector]
