"""A loopback server speaking Amazon Bedrock Agent Runtime's Rerank API: POST /rerank, REST-JSON, signed
with SigV4 by botocore (the server checks the Authorization header's shape and scope, not the signature).

Scoring is deterministic so tests can predict the order: a source's relevanceScore is the share of the
query's distinct words (lower-cased, \\w+) that it contains, plus a tiny tie-break favouring earlier
sources, rounded to 6 places. Results come best first, `numberOfResults` of them, `page_size` per page
with a `nextToken` for the rest (None: all on one page).

The request is validated as the service does (its limits are botocore's service model's): a bad field is
a 400 ValidationException whose message names it. Errors carry `x-amzn-ErrorType`, as botocore expects.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.support.upstreams._base import Fault, Upstream, _Handler, retry_headers

MAX_SOURCES = 1000
MAX_TEXT = 32_000
MODELS = ("amazon.rerank-v1:0", "cohere.rerank-v3-5:0")
_ARN = re.compile(r"^arn:aws(-[a-z-]+)?:bedrock:(?P<region>[a-z0-9-]{1,20})::foundation-model/(?P<model>[^/]+)$")
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=[^/]+/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z-]+)/aws4_request,"
                   r" SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$")
_WORD = re.compile(r"\w+")
_ERRORS = {
    400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
    424: "DependencyFailedException", 429: "ThrottlingException", 500: "InternalServerException",
    502: "BadGatewayException", 503: "ServiceUnavailableException",
}


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def score(query: str, text: str, index: int) -> float:
    q = words(query)
    overlap = len(q & words(text)) / len(q) if q else 0.0
    return round(overlap + (MAX_SOURCES - index) * 1e-9, 9)


class RerankInvalid(ValueError):
    pass


def _texts(body: Any) -> tuple[str, list[str], int, str]:
    """(query, source texts, numberOfResults, model id) from a request, or RerankInvalid naming the field."""
    if not isinstance(body, dict):
        raise RerankInvalid("request body: required")
    queries = body.get("queries")
    if not isinstance(queries, list) or len(queries) != 1:
        raise RerankInvalid("queries: exactly one query is required")
    q = queries[0]
    if q.get("type") != "TEXT" or not isinstance((q.get("textQuery") or {}).get("text"), str):
        raise RerankInvalid("queries.0.textQuery.text: required, with type TEXT")
    query = q["textQuery"]["text"]
    sources = body.get("sources")
    if not isinstance(sources, list) or not 1 <= len(sources) <= MAX_SOURCES:
        raise RerankInvalid(f"sources: between 1 and {MAX_SOURCES} sources are required")
    texts = []
    for i, s in enumerate(sources):
        doc = (s or {}).get("inlineDocumentSource") or {}
        text = (doc.get("textDocument") or {}).get("text")
        if s.get("type") != "INLINE" or doc.get("type") != "TEXT" or not isinstance(text, str):
            raise RerankInvalid(f"sources.{i}.inlineDocumentSource.textDocument.text: required, INLINE TEXT")
        if not 1 <= len(text) <= MAX_TEXT:
            raise RerankInvalid(f"sources.{i}.inlineDocumentSource.textDocument.text: length must be 1 to {MAX_TEXT}")
        texts.append(text)
    config = body.get("rerankingConfiguration") or {}
    bedrock = config.get("bedrockRerankingConfiguration") or {}
    if config.get("type") != "BEDROCK_RERANKING_MODEL":
        raise RerankInvalid("rerankingConfiguration.type: must be BEDROCK_RERANKING_MODEL")
    arn = str((bedrock.get("modelConfiguration") or {}).get("modelArn") or "")
    m = _ARN.match(arn)
    if m is None or m["model"] not in MODELS:
        raise RerankInvalid(f"rerankingConfiguration.bedrockRerankingConfiguration.modelConfiguration.modelArn: "
                            f"{arn!r} is not a reranker model's ARN")
    n = bedrock.get("numberOfResults", len(texts))
    if not isinstance(n, int) or not 1 <= n <= len(texts):
        raise RerankInvalid("rerankingConfiguration.bedrockRerankingConfiguration.numberOfResults: must be "
                            "between 1 and the number of sources")
    return query, texts, n, m["model"]


class BedrockRerankUpstream(Upstream):
    base_path = ""  # botocore posts to /rerank under the endpoint URL

    def __init__(self, *, page_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.page_size = page_size

    def handle(self, h: _Handler, method: str, path: str, body: Any, fault: Fault | None) -> None:
        if method != "POST" or path.split("?")[0] != "/rerank":
            self._error(h, 404, f"Unknown path {path}")
            return
        auth = _AUTH.match(h.headers.get("authorization") or "")
        if auth is None or auth["service"] != "bedrock":
            h.send_json(403, {"message": "Missing Authentication Token"},
                        {"x-amzn-errortype": "AccessDeniedException"})
            return
        if fault is not None:
            self._fail(h, fault)
            return
        try:
            query, texts, n, _model = _texts(body)
        except RerankInvalid as err:
            self._error(h, 400, str(err))
            return
        ranked = sorted(range(len(texts)), key=lambda i: -score(query, texts[i], i))[:n]
        results = [{"index": i, "relevanceScore": score(query, texts[i], i)} for i in ranked]
        start = int(str(body.get("nextToken") or "page-0").removeprefix("page-") or 0)
        payload: dict[str, Any] = {"results": results[start:]}
        if self.page_size is not None and len(results) - start > self.page_size:
            payload = {"results": results[start:start + self.page_size], "nextToken": f"page-{start + self.page_size}"}
        h.send_json(200, payload, {"x-amzn-requestid": str(uuid.uuid4())})

    def _error(self, h: _Handler, status: int, message: str | None = None,
               headers: dict[str, str] | None = None) -> None:
        etype = _ERRORS.get(status, "InternalServerException" if status >= 500 else "ValidationException")
        h.send_json(status, {"message": message or f"{etype}: error {status}"},
                    {"x-amzn-errortype": f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                     "x-amzn-requestid": str(uuid.uuid4())} | (headers or {}))

    def _fail(self, h: _Handler, fault: Fault) -> None:
        if fault.kind == "status":
            self._error(h, fault.code, headers=retry_headers(fault))
        elif fault.kind == "malformed":
            h.send_bytes(200, b'{"results": [{"index": 0, "relevanceSc', "application/json")
        elif fault.kind == "auth":
            self._error(h, 403, "The security token included in the request is invalid.")
        else:
            h.reset()
