"""Typed retrieval requests and results; strict so that a bad field fails with its name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from stratus.errors import InvalidInput
from stratus.tenants import TenantId
from stratus.validation import describe_errors

Mode = Literal["lexical", "dense", "hybrid"]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# Scalars only: equality on a chunk's metadata key (`metadata @> {"key": value}`).
MetadataValue = Annotated[str, StringConstraints(max_length=256)] | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RetrievalFilters(_Strict):
    """Restrict both retrievers to some documents and/or chunks with given metadata."""

    source_key_prefix: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    # Strict mode would refuse a UUID given as a JSON string; accept the string and check it.
    document_ids: Annotated[list[Annotated[UUID, Field(strict=False)]], Field(min_length=1, max_length=500)] | None = (
        None
    )
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None

    def is_empty(self) -> bool:
        return self.source_key_prefix is None and self.document_ids is None and not self.metadata


class RetrieveRequest(_Strict):
    tenant_id: TenantId
    query: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    k: Annotated[int, Field(ge=1, le=100)] | None = None  # None: settings.retrieval_k
    mode: Mode = "hybrid"
    filters: RetrievalFilters = RetrievalFilters()
    # None: the tenant's reranker; False: none for this request. A request cannot choose a reranker its
    # tenant did not (docs/retrieval.md#reranking).
    rerank: bool | None = None
    # The workflow's request id (logs and trace annotations only; retrieval does not depend on it).
    request_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,128}$")] | None = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query must not be blank")
        return v


class Hit(BaseModel):
    chunk_id: int
    document_id: str
    source_key: str
    document_version: int
    text: str
    title: str | None
    heading_path: list[str]
    page: int | None
    score: float  # fused score in hybrid mode (retrieval.fusion), else the single retriever's score
    lexical_score: float | None = None  # BM25
    lexical_rank: int | None = None  # 1-based; None when the retriever did not return this chunk
    dense_score: float | None = None  # cosine similarity
    dense_rank: int | None = None
    rerank_score: float | None = None


class RetrieveResponse(BaseModel):
    tenant_id: str
    query: str
    mode: Mode
    k: int
    reranker: str  # the reranker this request was given ("none" when reranking was off)
    hits: list[Hit]
    timings_ms: dict[str, float]  # per stage: embed, filters, lexical, dense, fuse, fetch, rerank, total
    # False when chunks holding only very common query terms were not scored (see retrieval.lexical).
    lexical_exact: bool | None = None
    rerank_model: str | None = None
    # False when a reranker was chosen but did not run: the hits are then the fused order and
    # `rerank_error` says why (an outage, throttling past the retries, the stage's deadline, a refusal).
    reranked: bool = False
    rerank_error: str | None = None
    rerank_cost_usd: float = 0.0
    # The model the question was embedded with and whose index was searched (None: no dense retrieval).
    embedding_model: str | None = None


@dataclass(frozen=True)
class Reranked:
    """A reranker's answer: the hits (best first) and what it cost (hosted rerankers bill per query)."""

    hits: list[Hit]
    cost_usd: float = 0.0
    calls: int = 0


def parse_request(event: object) -> RetrieveRequest:
    """Validate a retrieve event; InvalidInput names the first bad field (e.g. `filters.document_ids.0`)."""
    try:
        return RetrieveRequest.model_validate(event)
    except ValidationError as err:
        problems, field = describe_errors(err, empty="request")
        raise InvalidInput(f"invalid retrieve request: {problems}", field=field) from None
