"""A loopback server speaking Bedrock Runtime's InvokeModel for the embedding models:
POST /model/{modelId}/invoke with the model's own JSON body, answered as the service does.

- amazon.titan-embed-text-v2:0: `{"inputText", "dimensions" (256/512/1024), "normalize",
  "embeddingTypes"}` -> `{"embedding", "embeddingsByType", "inputTextTokenCount"}`; 8,192 tokens and
  50,000 characters at most.
- cohere.embed-english-v3 / cohere.embed-multilingual-v3: `{"texts" (1..96, 2,048 characters each),
  "input_type" (search_document, search_query, classification, clustering), "truncate"}` ->
  `{"embeddings", "id", "response_type": "embeddings_floats", "texts"}` (1,024 dimensions, not unit
  length); with truncate NONE a text over 512 tokens is a 400.
Both send the tokens billed in `x-amzn-bedrock-input-token-count`. Errors and faults are those of the
Converse server (JSON body, `x-amzn-ErrorType`), which this one extends.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import unquote

from tests.support.upstreams._base import Fault, _Handler, count_tokens
from tests.support.upstreams.bedrock_converse import BedrockUpstream
from tests.support.upstreams.embeddings import fake_vector

_PATH = re.compile(r"^/model/(?P<model>[^/]+)/invoke$")
TITAN = "amazon.titan-embed-text-v2:0"
COHERE = ("cohere.embed-english-v3", "cohere.embed-multilingual-v3")
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")


class Invalid(ValueError):
    pass


def titan(body: Any) -> tuple[dict[str, Any], int]:
    text = body.get("inputText") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text:
        raise Invalid("Malformed input request: #: required key [inputText] not found")
    if len(text) > 50_000:
        raise Invalid("Malformed input request: #/inputText: expected maxLength: 50000")
    tokens = count_tokens(text)
    if tokens > 8192:
        raise Invalid(f"400 Bad Request: Too many input tokens. Max input tokens: 8192, request input token "
                      f"count: {tokens}")
    dims = body.get("dimensions", 1024)
    if dims not in (256, 512, 1024):
        raise Invalid(f"Malformed input request: #/dimensions: {dims} is not a valid enum value")
    vector = fake_vector(text, dims, normalize=body.get("normalize", True))
    return {"embedding": vector, "embeddingsByType": {"float": vector}, "inputTextTokenCount": tokens}, tokens


def cohere(body: Any) -> tuple[dict[str, Any], int]:
    texts = body.get("texts") if isinstance(body, dict) else None
    if not isinstance(texts, list) or not 1 <= len(texts) <= 96 or not all(isinstance(t, str) for t in texts):
        raise Invalid("Malformed input request: #/texts: expected between 1 and 96 strings")
    if body.get("input_type") not in INPUT_TYPES:
        raise Invalid("Malformed input request: #/input_type: required, one of " + ", ".join(INPUT_TYPES))
    for i, t in enumerate(texts):
        if len(t) > 2048:
            raise Invalid(f"Malformed input request: #/texts/{i}: expected maxLength: 2048, actual: {len(t)}")
        if body.get("truncate", "NONE") == "NONE" and count_tokens(t) > 512:
            raise Invalid(f"invalid request: texts[{i}] is too long: it has {count_tokens(t)} tokens, the "
                          f"model reads at most 512 (set truncate to START or END to cut it)")
    salt = body["input_type"]
    vectors = [[x * 3.0 for x in fake_vector(t, 1024, salt=salt)] for t in texts]  # not unit length
    return ({"embeddings": vectors, "id": str(uuid.uuid4()), "response_type": "embeddings_floats",
             "texts": texts}, sum(count_tokens(t) for t in texts))


class BedrockEmbedUpstream(BedrockUpstream):
    def handle(self, h: _Handler, method: str, path: str, body: Any, fault: Fault | None) -> None:
        m = _PATH.match(unquote(path.split("?")[0]))
        if method != "POST" or m is None:
            self._error(h, 404, f"Unknown path {path}")
            return
        if fault is not None:
            self._fail(h, fault)
            return
        model = m["model"]
        if model != TITAN and model not in COHERE:
            self._error(h, 404, "The provided model identifier is invalid.")
            return
        try:
            payload, tokens = titan(body) if model == TITAN else cohere(body)
        except Invalid as err:
            self._error(h, 400, str(err))
            return
        h.send_json(200, payload, {"x-amzn-requestid": str(uuid.uuid4()),
                                   "x-amzn-bedrock-input-token-count": str(tokens),
                                   "x-amzn-bedrock-invocation-latency": "1"})
