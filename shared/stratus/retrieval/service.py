"""retrieve(): hybrid retrieval for one tenant — BM25 and HNSW candidates fused (retrieval.fusion:
min-max normalised scores in a weighted sum by default, or weighted RRF), optionally reranked, with the
time each stage took (and, when tracing is on, a span per stage).

Hybrid runs its two sides at once (`STRATUS_RETRIEVAL_PARALLEL`, on by default): the dense side (query
embedding, then the HNSW walk) on a second connection in a worker thread while the lexical side runs on the
caller's; both wait on PostgreSQL or in ONNX Runtime, which release the GIL. The second connection is the
caller's `dense_conn`, else, when the caller left the connection to retrieve() (`conn` not given), the calling
thread's second kept connection (`get_side_connection`, closed with the first); a caller that passes only
`conn` gets the two sides one after the other on it. Each side reads in its own transaction, bound to the
same tenant.

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
from stratus.db.connection import get_side_connection, tenant_transaction
from stratus.embeddings import OFFLINE_MODELS, Embedder, alongside_other_work, get_embedder
from stratus.errors import DatabaseUnavailable
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

# Worker threads for hybrid's dense side; the connection each uses belongs to the caller. A caller that
# finds every worker busy runs its two sides in turn rather than queue behind the others.
_DENSE_WORKERS = 8
_workers: ThreadPoolExecutor | None = None
_workers_lock = threading.Lock()
_slots = threading.BoundedSemaphore(_DENSE_WORKERS)


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
    second = _second_connection(conn, dense_conn) if parallel and side is not None else None
    try:
        if side is not None and (second is None or side.model not in OFFLINE_MODELS):
            side.embed()  # before the transaction opens: no locks held during inference or a provider call
        with tenant_transaction(request.tenant_id, conn) as tx:
            reranker = get_reranker(choose(settings, stored_choice(tx, request.tenant_id), request.rerank),
                                    settings)
            with _timed(timings, "filters"):
                scope = _scope(tx, request.tenant_id, request.filters)
            rankings, lexical_exact = _rankings(tx, request, scope, depth, settings, timings, side, second)
            with _timed(timings, "fuse", "fusion"):
                keep = depth if reranker.name != "none" else k
                fused = fuse(
                    rankings, settings.fusion, rrf_k=settings.rrf_k, limit=keep,
                    weights={"lexical": settings.fusion_lexical_weight,
                             "dense": 1.0 - settings.fusion_lexical_weight},
                )
            with _timed(timings, "fetch"):
                rows = chunk_store.fetch_chunks(tx, request.tenant_id, [f.chunk_id for f in fused])
    finally:
        if second is not None:
            _slots.release()

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


def _second_connection(conn: chunk_store.Connection | None,
                       dense_conn: chunk_store.Connection | None) -> chunk_store.Connection | None:
    """The dense side's connection, holding a worker slot (the caller releases it); None, and the two sides
    run in turn, when every worker is busy or the calling thread cannot open its second connection."""
    if dense_conn is not None and dense_conn is conn:
        return None  # one connection cannot serve two threads
    if not _slots.acquire(blocking=False):
        return None
    if dense_conn is not None:
        return dense_conn
    try:
        return get_side_connection()
    except DatabaseUnavailable as err:
        _slots.release()
        log.warning("hybrid retrieval runs its sides in turn: no second connection (%s)", err)
        return None


def _rankings(tx: chunk_store.Connection, request: RetrieveRequest, scope: ChunkScope, depth: int,
              settings: Settings, timings: dict[str, float], side: _DenseSide | None,
              second: chunk_store.Connection | None) -> tuple[dict[str, list[tuple[int, float]]], bool | None]:
    """Each retriever's ranking (and whether the lexical one is exact): with `second`, the dense side runs
    on it in a worker thread meanwhile; if that connection is lost, it runs again on the caller's."""
    rankings: dict[str, list[tuple[int, float]]] = {}
    exact: bool | None = None
    pending: Future[list[tuple[int, float]]] | None = None
    if side is not None and second is not None:  # the worker runs in this context: its spans nest under ours
        pending = _worker_pool().submit(contextvars.copy_context().run, side.on_own_connection, scope, second)
    try:
        if request.mode in ("lexical", "hybrid"):
            with _timed(timings, "lexical") as step:
                result = lexical.search(
                    tx, request.tenant_id, request.query, scope, limit=depth, k1=settings.bm25_k1,
                    b=settings.bm25_b, max_postings=settings.bm25_max_postings,
                )
                step.annotate(candidates=len(result.hits), exact=result.exact)
            rankings["lexical"], exact = result.hits, result.exact
    except BaseException:
        if pending is not None:  # never leave the worker using a connection the caller may reuse
            wait([pending])
            if pending.exception() is not None:
                log.warning("hybrid retrieval's dense side failed as well: %r", pending.exception())
        raise
    if pending is not None and second is not None and side is not None:
        try:
            rankings["dense"] = pending.result()
        except DatabaseUnavailable:
            if not (second.closed or second.broken):
                raise
            log.info("hybrid retrieval's second connection was lost; the dense side runs on the first")
            rankings["dense"] = side.search(tx, scope)
    elif side is not None:
        rankings["dense"] = side.search(tx, scope)
    return rankings, exact


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
        assert self.vector is not None, "the query is embedded first"
        with _timed(self.timings, "dense") as step:
            hits = dense.search(
                tx, self.request.tenant_id, self.vector, self.model, scope, limit=self.depth,
                scan=dense.scan_settings(self.settings),
                side=not tenant_models.stored_in_chunk_rows(self.model, self.settings),
            )
            step.annotate(candidates=len(hits))
        return hits

    def on_own_connection(self, scope: ChunkScope, conn: chunk_store.Connection) -> list[tuple[int, float]]:
        """Embeds (unless done already), then searches in a transaction of its own on `conn`, which no other
        thread uses meanwhile. The embedding runs on one thread: beside the lexical side, a query on every
        core was slower (docs/retrieval.md)."""
        if self.vector is None:
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
