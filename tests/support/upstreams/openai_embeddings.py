"""A loopback server speaking OpenAI's embeddings API: POST /v1/embeddings, `encoding_format` float or
base64 (little-endian float32, which the SDK asks for by default and decodes), `dimensions` for the
text-embedding-3 models, `usage.prompt_tokens`. Input is text or token arrays (an array of ints, or arrays
of them: each id one token; its vector is the text's for the ids written out, space-separated). Validated
as the service does: at most 2,048 inputs, 8,192 tokens each and 300,000 in all; an empty string is
refused; a bad field is a 400 naming it. `api_key` set: any other bearer token is a 401, as api.openai.com answers."""

from __future__ import annotations

import base64
import struct
from typing import Any

from tests.support.upstreams._base import Fault, _Handler, count_tokens
from tests.support.upstreams.embeddings import fake_vector
from tests.support.upstreams.openai_chat import OpenAIUpstream

MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


def _invalid(message: str, param: str | None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


class OpenAIEmbeddingsUpstream(OpenAIUpstream):  # the chat server's errors and faults

    def __init__(self, *, api_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key

    def handle(self, h: _Handler, method: str, path: str, body: Any, fault: Fault | None) -> None:
        if method != "POST" or path.split("?")[0] != "/v1/embeddings":
            h.send_json(404, _invalid(f"Unknown path {path}", None))
            return
        if self.api_key is not None and h.headers.get("authorization") != f"Bearer {self.api_key}":
            self._fail(h, Fault.auth())
            return
        if fault is not None:
            self._fail(h, fault)
            return
        status, payload = answer(body)
        h.send_json(status, payload, {"x-request-id": "req_loopback"})


def answer(body: Any) -> tuple[int, dict[str, Any]]:
    if not isinstance(body, dict):
        return 400, _invalid("We could not parse the JSON body of your request.", None)
    model = body.get("model")
    if model not in MODELS:
        return 404, _invalid(f"The model `{model}` does not exist or you do not have access to it.", "model",
                             "model_not_found")
    texts = body.get("input")
    if isinstance(texts, str) or (isinstance(texts, list) and texts and isinstance(texts[0], int)):
        texts = [texts]
    if isinstance(texts, list) and texts and all(_token_array(t) for t in texts):
        texts = [" ".join(str(i) for i in t) for t in texts]
    if not isinstance(texts, list) or not 1 <= len(texts) <= 2048 or not all(isinstance(t, str) for t in texts):
        return 400, _invalid("'$.input' is invalid. Please check the API reference.", "input")
    if any(not t for t in texts):
        return 400, _invalid("'$.input' is invalid. Please check the API reference.", "input")
    counts = [count_tokens(t) for t in texts]
    for n in counts:
        if n > 8192:
            return 400, _invalid(f"This model's maximum context length is 8192 tokens, however you requested {n} "
                                 f"tokens (8192 in your prompt; 0 for the completion). Please reduce your "
                                 f"prompt; or completion length.", None)
    if sum(counts) > 300_000:
        return 400, _invalid(f"Requested {sum(counts)} tokens, max 300000 tokens per request", "input",
                             "max_tokens_per_request")
    dims = body.get("dimensions", MODELS[model])
    fixed = model.endswith("ada-002") and "dimensions" in body  # ada-002 has one size only
    if not isinstance(dims, int) or not 1 <= dims <= MODELS[model] or fixed:
        return 400, _invalid(f"This model does not support specifying dimensions of {dims}.", "dimensions")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return 400, _invalid(f"'{encoding}' is not one of ['float', 'base64'] - 'encoding_format'",
                             "encoding_format")
    data = []
    for i, t in enumerate(texts):
        v = fake_vector(t, dims)
        emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *v)).decode() if encoding == "base64" else v
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(counts)
    return 200, {"object": "list", "data": data, "model": model,
                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _token_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, int) and i >= 0 for i in value)
