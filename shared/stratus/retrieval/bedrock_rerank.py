"""Amazon Bedrock's Rerank API (bedrock-agent-runtime `Rerank`) through boto3.

One call carries one TEXT query and the candidates as INLINE TEXT sources; the reranking configuration
names the model by its foundation-model ARN (built from the model id and the region) and asks for
`numberOfResults`. Results carry each source's `index` in the call and a `relevanceScore`; a `nextToken`
asks for the next page of results with the same request.

Limits (botocore's service model for bedrock-agent-runtime 2023-07-26): at most 1,000 sources per call,
each text 1 to 32,000 characters; one query per call. Candidates are sent in batches of
`rerank_batch_size` (default 100: Bedrock bills a call per started 100 documents, so a bigger batch saves
nothing), each batch asked for its best min(k, batch) and the batches' results merged by relevance score
(the models score each document against the query on its own, so scores compare across calls).

Failures are classified like the chat providers' (stratus.llm.errors). Throttling, 5xx and dropped
connections are retried with exponential backoff and full jitter (a retry-after wins when it is short),
never past the stage's deadline; a timeout is not retried (it used the time a retry would need).
A circuit breaker per model (STRATUS_BREAKER_FAILURES consecutive failed stages open it for
STRATUS_BREAKER_COOLDOWN_S) stops an outage from costing every query the whole stage deadline: while it is
open the stage fails at once with `circuit_open`, and retrieval serves the fused order.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import botocore.exceptions as bex
import botocore.parsers
import urllib3.exceptions

from stratus.aws.bedrock import agent_runtime_client
from stratus.breaker import CircuitBreaker
from stratus.llm import errors as e
from stratus.llm.providers._classify import classify_sdk_error, for_status, malformed
from stratus.retrieval.models import Hit, Reranked

if TYPE_CHECKING:
    from stratus.config import Settings

MAX_SOURCES_PER_CALL = 1000
MAX_TEXT_CHARS = 32_000
DOCUMENTS_PER_QUERY = 100  # Bedrock's billing unit: a call is one "query" per started 100 documents
# USD per query (one call of up to 100 documents), on-demand, from the Amazon Bedrock pricing page
# (aws.amazon.com/bedrock/pricing, rerank models): Amazon Rerank 1.0 $1.00 and Cohere Rerank 3.5 $2.00 per
# 1,000 queries. Re-check there when prices change; the figures only feed the response's rerank_cost_usd.
PRICE_PER_QUERY_USD = {"amazon.rerank-v1:0": 0.001, "cohere.rerank-v3-5:0": 0.002}
# Below this much time left an attempt cannot finish: give up rather than start one.
MIN_ATTEMPT_S = 0.05

_CODE_STATUS = {"throttlingexception": 429, "servicequotaexceededexception": 429,
                "internalserverexception": 500, "badgatewayexception": 502, "dependencyfailedexception": 502,
                "serviceunavailableexception": 503, "accessdeniedexception": 403,
                "unrecognizedclientexception": 403, "expiredtokenexception": 403,
                "validationexception": 400, "conflictexception": 409, "resourcenotfoundexception": 404}
_CAUGHT = (bex.BotoCoreError, bex.ClientError, botocore.parsers.ResponseParserError, urllib3.exceptions.HTTPError,
           ValueError)


class CircuitOpen(e.ProviderError, code="circuit_open"):
    """The reranker failed too often lately: not called until its cooldown passes."""


def model_arn(model_id: str, region: str) -> str:
    """The region's foundation-model ARN for a model id (e.g. amazon.rerank-v1:0)."""
    partition = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
    return f"arn:{partition}:bedrock:{region}::foundation-model/{model_id}"


def source_text(hit: Hit) -> str:
    """What the model reads for a chunk: its document title, then its text, within the API's limit."""
    text = f"{hit.title}\n\n{hit.text}" if hit.title else hit.text
    return (text or " ")[:MAX_TEXT_CHARS]  # the API refuses an empty text


def build_request(query: str, texts: list[str], arn: str, number_of_results: int,
                  next_token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "queries": [{"type": "TEXT", "textQuery": {"text": query[:MAX_TEXT_CHARS]}}],
        "sources": [{"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": t}}}
                    for t in texts],
        "rerankingConfiguration": {
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {"numberOfResults": number_of_results,
                                              "modelConfiguration": {"modelArn": arn}},
        },
    }
    if next_token:
        params["nextToken"] = next_token
    return params


def parse_results(data: Any, sources: int, name: str) -> list[tuple[int, float]]:
    """(index in the call's sources, relevance score) per result; anything else is a malformed answer."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise malformed(name, "results is required")
    out = []
    for r in results:
        index, score = (r.get("index"), r.get("relevanceScore")) if isinstance(r, dict) else (None, None)
        if not isinstance(index, int) or not 0 <= index < sources or not isinstance(score, int | float):
            raise malformed(name, f"a result without a valid index (0..{sources - 1}) and relevanceScore")
        out.append((index, float(score)))
    return out


def queries_billed(documents: int) -> int:
    return math.ceil(documents / DOCUMENTS_PER_QUERY)


def classify(err: Exception, name: str) -> e.ProviderError:
    return classify_sdk_error(err, name, timeout=(bex.ReadTimeoutError, bex.ConnectTimeoutError),
                              connection=(bex.HTTPClientError, bex.ConnectionError, urllib3.exceptions.HTTPError),
                              specific=_classify_sdk, unparsable=(botocore.parsers.ResponseParserError, ValueError))


def _classify_sdk(err: Exception, name: str) -> e.ProviderError | None:
    if isinstance(err, bex.ClientError):
        error = err.response.get("Error") or {}
        meta = err.response.get("ResponseMetadata") or {}
        code, message = str(error.get("Code") or ""), str(error.get("Message") or err)
        status = _CODE_STATUS.get(code.lower()) or int(meta.get("HTTPStatusCode") or 500)
        return for_status(status, f"{name}: {code}: {message}", deployment=name, headers=meta.get("HTTPHeaders"))
    if isinstance(err, bex.NoCredentialsError | bex.PartialCredentialsError):
        return e.AuthenticationFailed(f"{name}: no AWS credentials: {err}", deployment=name)
    if isinstance(err, bex.ParamValidationError):  # botocore's own check of the request against the model
        return e.InvalidRequest(f"{name}: {err}", deployment=name)
    return None


class BedrockReranker:
    name = "bedrock"

    def __init__(self, model: str, *, region: str, endpoint_url: str | None = None, batch_size: int = 100,
                 retries: int = 2, base_backoff_s: float = 0.25, max_backoff_s: float = 8.0,
                 breaker: CircuitBreaker | None = None, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        if model not in PRICE_PER_QUERY_USD:
            known = ", ".join(sorted(PRICE_PER_QUERY_USD))
            raise e.InvalidRequest(f"unknown Bedrock rerank model {model!r} (known: {known})", field="rerank_model")
        self.model = model
        self.region = region
        self.arn = model_arn(model, region)
        self.endpoint_url = endpoint_url
        self.batch_size = max(1, min(batch_size, MAX_SOURCES_PER_CALL))
        self.retries, self.base_backoff_s, self.max_backoff_s = retries, base_backoff_s, max_backoff_s
        self.sleep, self.jitter = sleep, jitter
        self.breaker = breaker or CircuitBreaker(failures=1_000_000, cooldown_s=0.0)  # none given: never opens
        self.label = f"bedrock-rerank:{model}"

    @classmethod
    def from_settings(cls, model: str, settings: Settings) -> BedrockReranker:
        return cls(model, region=settings.rerank_region or settings.aws_region,
                   endpoint_url=settings.rerank_endpoint_url, batch_size=settings.rerank_batch_size,
                   retries=settings.retry_attempts, base_backoff_s=settings.retry_base_backoff_s,
                   max_backoff_s=settings.retry_max_backoff_s,
                   breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s))

    def rerank(self, query: str, hits: list[Hit], k: int, *, deadline: float) -> Reranked:
        if not hits:
            return Reranked(hits=[])
        if not self.breaker.allow(self.label):
            raise CircuitOpen(f"{self.label}: skipped after repeated failures (circuit open)", deployment=self.label)
        try:
            reranked = self._rerank(query, hits, k, deadline)
        except e.InvalidRequest:
            self.breaker.success(self.label)  # the request was refused, the service answered: not an outage
            raise
        except e.ProviderError:
            self.breaker.failure(self.label)
            raise
        self.breaker.success(self.label)
        return reranked

    def _rerank(self, query: str, hits: list[Hit], k: int, deadline: float) -> Reranked:
        scored: list[tuple[float, int]] = []
        calls = billed = 0
        for start in range(0, len(hits), self.batch_size):
            batch = hits[start:start + self.batch_size]
            results, pages = self._call(query, [source_text(h) for h in batch], min(k, len(batch)), deadline)
            scored.extend((score, start + index) for index, score in results)
            calls += pages
            billed += queries_billed(len(batch))
        scored.sort(key=lambda pair: (-pair[0], pair[1]))  # ties keep the fused order
        seen: set[int] = set()
        out: list[Hit] = []
        for score, i in scored:
            if i not in seen and len(out) < k:
                seen.add(i)
                out.append(hits[i].model_copy(update={"rerank_score": score}))
        return Reranked(hits=out, cost_usd=round(billed * PRICE_PER_QUERY_USD[self.model], 6), calls=calls)

    def _call(self, query: str, texts: list[str], n: int, deadline: float) -> tuple[list[tuple[int, float]], int]:
        results: list[tuple[int, float]] = []
        token: str | None = None
        pages = 0
        while True:
            data = self._attempt(build_request(query, texts, self.arn, n, token), deadline)
            pages += 1
            results.extend(parse_results(data, len(texts), self.label))
            token = data.get("nextToken") or None
            if token is None or len(results) >= n:
                return results, pages
            if pages > len(texts):  # a token that never ends would spin until the deadline
                raise malformed(self.label, "nextToken did not end after a page per source")

    def _attempt(self, params: dict[str, Any], deadline: float) -> Any:
        tries = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_S:
                raise e.DeadlineExceeded(f"{self.label}: the rerank deadline passed after {tries} attempt(s)",
                                         deployment=self.label)
            try:
                client = agent_runtime_client(region=self.region, endpoint_url=self.endpoint_url, timeout=remaining)
                return client.rerank(**params)
            except _CAUGHT as err:
                failure = classify(err, self.label)
            tries += 1
            if not failure.retryable or isinstance(failure, e.ProviderTimeout) or tries > self.retries:
                raise failure
            delay = self._delay(failure, tries)
            if delay is None or time.monotonic() + delay >= deadline:
                raise failure
            self.sleep(delay)

    def _delay(self, failure: e.ProviderError, tries: int) -> float | None:
        if failure.retry_after is not None:
            return failure.retry_after if failure.retry_after <= self.max_backoff_s else None
        backoff: float = self.base_backoff_s * (2 ** (tries - 1))
        return min(self.max_backoff_s, backoff) * self.jitter()
