"""retrieve(): hybrid retrieval for one tenant — BM25 and HNSW candidates fused (retrieval.fusion:
min-max normalised scores in a weighted sum by default, or weighted RRF), optionally reranked, with the
time each stage took (and, when tracing is on, a span per stage).

Hybrid runs its two sides at once (`STRATUS_RETRIEVAL_PARALLEL`, on by default): the dense side (query
embedding, then the HNSW walk) on a second connection in a worker thread while the lexical side runs on the
caller's; both wait on PostgreSQL or in ONNX Runtime, which release the GIL. The second connection is the
caller's `dense_conn`, else, when the caller left the connection to retrieve() (`conn` not given), the worker
thread's own kept connection; a caller that passes only `conn` gets the two sides one after the other on it.
Each side reads in its own transaction, bound to the same tenant.

Reranking fails open: a reranker that cannot answer within its deadline (outage, throttling past its
retries, a refusal) leaves the fused order in place, and the response says so (`reranked`, `rerank_error`)."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from stratus.config import Settings, get_settings
from stratus.db import chunks as chunk_store
from stratus.db.chunks import ChunkScope
from stratus.db.connection import tenant_transaction
from stratus.embeddings import Embedder, alongside_other_work, get_embedder
from stratus.llm.errors import ProviderError
from stratus.reindex import models as tenant_models
from stratus.retrieval import dense, lexical
from stratus.retrieval.fusion import Fused, fuse
from stratus.retrieval.models import Hit, RetrievalFilters, RetrieveRequest, RetrieveResponse
from stratus.retrieval.rerank import choose, get_reranker, stored_choice
from stratus.spans import Span, span

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

# Worker threads for hybrid's dense side. Each keeps its own database connection (get_connection is per
# thread): a warm Lambda, serving one request at a time, holds one second connection.
_DENSE_WORKERS = 4
_workers: ThreadPoolExecutor | None = None
_workers_lock = threading.Lock()


def _worker_pool() -> ThreadPoolExecutor:
    global _workers
    with _workers_lock:
        if _workers is None:
            _workers = ThreadPoolExecutor(max_workers=_DENSE_WORKERS, thread_name_prefix="stratus-dense")
        return _workers


@contextmanager
def _timed(timings: dict[str, float], stage: str, step: str | None = None, **annotations: str | int) -> Iterator[Span]:
    """Times a stage into `timings` and traces it as the `<step or stage>` span."""
    start = time.perf_counter()
    try:
        with span(step or stage, **annotations) as opened:
            yield opened
    finally:
        timings[stage] = round((time.perf_counter() - start) * 1000, 3)


def _scope(conn: chunk_store.Connection, tenant_id: str, filters: RetrievalFilters) -> ChunkScope:
    ids: set[str] | None = None
    if filters.document_ids is not None:
        ids = {str(d) for d in filters.document_ids}
    if filters.source_key_prefix is not None:
        matching = set(chunk_store.document_ids_with_prefix(conn, tenant_id, filters.source_key_prefix))
        ids = matching if ids is None else ids & matching
    return ChunkScope(document_ids=sorted(ids) if ids is not None else None, metadata=filters.metadata)


def retrieve(
    request: RetrieveRequest,
    *,
    conn: chunk_store.Connection | None = None,
    dense_conn: chunk_store.Connection | None = None,
    embedder: Embedder | None = None,
    settings: Settings | None = None,
) -> RetrieveResponse:
    """`dense_conn`: a second connection, used by this call alone, for hybrid's dense side."""
    settings = settings or get_settings()
    k = request.k or settings.retrieval_k
    depth = max(settings.retrieval_candidates, k)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    use_lexical = request.mode in ("lexical", "hybrid")
    use_dense = request.mode in ("dense", "hybrid")
    parallel = (use_lexical and use_dense and settings.retrieval_parallel
                and (conn is None or dense_conn is not None))

    # The tenant's model, read once: the query vector and the index searched are of the same model.
    model = tenant_models.query_model(request.tenant_id, settings, conn) if use_dense else None
    side: _DenseSide | None = None
    if model is not None:
        if embedder is None or embedder.model_name != model:
            embedder = get_embedder(model, settings)
        side = _DenseSide(request, model, embedder, depth, settings, timings)
        if not parallel:  # embed before opening the transaction: no locks held during inference
            side.embed()

    rankings: dict[str, list[tuple[int, float]]] = {}
    lexical_exact: bool | None = None
    with tenant_transaction(request.tenant_id, conn) as tx:
        reranker = get_reranker(choose(settings, stored_choice(tx, request.tenant_id), request.rerank), settings)
        with _timed(timings, "filters"):
            scope = _scope(tx, request.tenant_id, request.filters)
        pending: Future[list[tuple[int, float]]] | None = None
        if parallel and side is not None:  # the worker runs in this context: its spans nest under ours
            pending = _worker_pool().submit(contextvars.copy_context().run, side.on_own_connection, scope,
                                            dense_conn)
        try:
            if use_lexical:
                with _timed(timings, "lexical") as step:
                    result = lexical.search(
                        tx, request.tenant_id, request.query, scope, limit=depth, k1=settings.bm25_k1,
                        b=settings.bm25_b, max_postings=settings.bm25_max_postings,
                    )
                    step.annotate(candidates=len(result.hits), exact=result.exact)
                rankings["lexical"], lexical_exact = result.hits, result.exact
        finally:
            if pending is not None:
                wait([pending])  # never leave the worker using a connection the caller may reuse
        if pending is not None:
            rankings["dense"] = pending.result()
        elif side is not None:
            rankings["dense"] = side.search(tx, scope)
        with _timed(timings, "fuse", "fusion"):
            keep = depth if reranker.name != "none" else k
            fused = fuse(
                rankings, settings.fusion, rrf_k=settings.rrf_k, limit=keep,
                weights={"lexical": settings.fusion_lexical_weight, "dense": 1.0 - settings.fusion_lexical_weight},
            )
        with _timed(timings, "fetch"):
            rows = chunk_store.fetch_chunks(tx, request.tenant_id, [f.chunk_id for f in fused])

    hits = [_hit(f, rows[f.chunk_id], request.mode) for f in fused if f.chunk_id in rows]
    rerank_error: str | None = None
    cost = 0.0
    with _timed(timings, "rerank", reranker=reranker.name) as step:
        try:
            reranked = reranker.rerank(request.query, hits, k,
                                       deadline=time.monotonic() + settings.rerank_timeout_s)
            hits, cost = reranked.hits, reranked.cost_usd
        except ProviderError as err:  # fail open: the fused order is still a good answer
            hits, rerank_error = hits[:k], f"{err.code}: {err.message}"
            step.annotate(rerank_error=err.code)
            log.warning("tenant %s: rerank (%s) skipped, serving the fused order: %s", request.tenant_id,
                        reranker.name, rerank_error)
    timings["total"] = round((time.perf_counter() - started) * 1000, 3)
    return RetrieveResponse(
        tenant_id=request.tenant_id, query=request.query, mode=request.mode, k=k, reranker=reranker.name,
        hits=hits, timings_ms=timings, lexical_exact=lexical_exact, rerank_model=reranker.model,
        reranked=reranker.name != "none" and rerank_error is None, rerank_error=rerank_error,
        rerank_cost_usd=cost, embedding_model=model,
    )


class _DenseSide:
    """The dense side of one retrieval: the query embedded with the tenant's model, then its HNSW walk."""

    def __init__(self, request: RetrieveRequest, model: str, embedder: Embedder, depth: int, settings: Settings,
                 timings: dict[str, float]) -> None:
        self.request, self.model, self.embedder, self.depth = request, model, embedder, depth
        self.settings, self.timings = settings, timings
        self.vector: np.ndarray | None = None

    def embed(self) -> None:
        with _timed(self.timings, "embed", "embed_query", model=self.model):
            self.vector = self.embedder.embed([self.request.query], kind="query")[0]

    def search(self, tx: chunk_store.Connection, scope: ChunkScope) -> list[tuple[int, float]]:
        if self.vector is None:
            self.embed()
        assert self.vector is not None
        with _timed(self.timings, "dense") as step:
            hits = dense.search(
                tx, self.request.tenant_id, self.vector, self.model, scope, limit=self.depth,
                scan=dense.scan_settings(self.settings),
                side=not tenant_models.stored_in_chunk_rows(self.model, self.settings),
            )
            step.annotate(candidates=len(hits))
        return hits

    def on_own_connection(self, scope: ChunkScope, conn: chunk_store.Connection | None) -> list[tuple[int, float]]:
        """Embeds, then searches in a transaction of its own on `conn` (None: this thread's kept connection).
        The embedding runs on one thread: beside the lexical side, a query on every core was slower
        (docs/retrieval.md)."""
        with alongside_other_work():
            self.embed()
        with tenant_transaction(self.request.tenant_id, conn) as tx:
            return self.search(tx, scope)


def _hit(f: Fused, row: dict[str, Any], mode: str) -> Hit:
    # Single-retriever modes report that retriever's own score; hybrid reports the fused score.
    score = f.score if mode == "hybrid" else next(iter(f.scores.values()))
    return Hit(
        chunk_id=row["chunk_id"], document_id=row["document_id"], source_key=row["source_key"],
        document_version=row["document_version"], text=row["text"], title=row["title"],
        heading_path=list(row["heading_path"] or []), page=row["page"], score=score,
        lexical_score=f.scores.get("lexical"), lexical_rank=f.ranks.get("lexical"),
        dense_score=f.scores.get("dense"), dense_rank=f.ranks.get("dense"),
    )
