"""The ingest pipeline, independent of where bytes come from (S3, the CLI, benchmarks, evals).

    ingest_document(tenant_id, key, data, source) -> IngestResult
    remove_document(tenant_id, key) -> IngestResult

Extraction, chunking and embedding run outside any transaction; the version swap runs in one
tenant transaction with the document row locked, so readers see the old version or the new one,
never half of either, and concurrent or out-of-order events for the same key cannot interleave.
With tracing on each stage is a span: `lookup`, `extract`, `chunk`, `embed`, `store`
(`record_failure`, `remove` on those paths).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from stratus.config import Settings, get_settings
from stratus.db import chunk_sentences, documents, embedding_state
from stratus.db.connection import tenant_transaction
from stratus.db.limits import record_usage
from stratus.db.records import ChunkDraft, DocumentState, SourceObject
from stratus.embeddings import Embedder, embed_metered, get_embedder, is_billed
from stratus.errors import ExtractionFailed, StratusError, TooLarge, TransientError, Unsupported
from stratus.ingest.chunking import CHUNKER_VERSION, chunk_document
from stratus.ingest.extract import extract
from stratus.ingest.models import IngestResult
from stratus.llm import extractive
from stratus.reindex import models as tenant_models
from stratus.spans import Span, span

log = logging.getLogger(__name__)

PERMANENT = (Unsupported, TooLarge, ExtractionFailed)  # recorded on the document, never retried

# Called with the document row locked, just before a write: False means "what we fetched is no longer
# the object's current state" (a newer event will bring that), so the write is skipped.
Confirm = Callable[[], bool]


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, step: str | None = None, **annotations: str | int) -> Iterator[Span]:
        """Adds the block's time to `name` and traces it as the `<step or name>` span."""
        start = time.perf_counter()
        try:
            with span(step or name, **annotations) as opened:
                yield opened
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def content_salt(settings: Settings) -> str:
    """Everything besides the text that shapes the stored chunks: changing any of it re-ingests."""
    return (
        f"model={settings.embedding_model};max={settings.chunk_max_tokens};"
        f"overlap={settings.chunk_overlap_tokens};chunker={CHUNKER_VERSION}"
    )


def embed_texts(embedder: Embedder, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Embed in batches of similar length (less padding per batch); rows come back in input order."""
    return embed_metered_texts(embedder, texts, batch_size)[0]


def embed_metered_texts(embedder: Embedder, texts: Sequence[str], batch_size: int) -> tuple[np.ndarray, int]:
    """embed_texts, with the tokens billed. A chunk a hosted model refuses (each is tried on its own, see
    stratus.embeddings.hosted) fails the document: Unsupported, recorded on it, never retried."""
    out = np.zeros((len(texts), embedder.dimensions), dtype=np.float32)
    tokens = 0
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        result = embed_metered(embedder, [texts[i] for i in idx])
        if result.failures:
            j, err = min(result.failures.items())
            raise Unsupported(f"chunk {idx[j]} cannot be embedded by {embedder.model_name}: {err.message}",
                              field="embedding_model")
        out[idx] = result.vectors
        tokens += result.input_tokens
    return out, tokens


@dataclass
class EmbeddedChunks:
    vectors: np.ndarray  # one per chunk, in the index's model
    tokens: int  # what a hosted model billed for them
    sentences: list[list[str]]  # each chunk's sentences
    sentence_vectors: list[np.ndarray]  # theirs, in `sentence_model` (the groundedness rail's)
    sentence_model: str


def embed_chunks(embedder: Embedder, chunks: Sequence[ChunkDraft], batch_size: int) -> EmbeddedChunks:
    """Each chunk's vector, and its sentences with theirs (stored for the groundedness rail, which then
    embeds only an answer's sentences). The sentences take the rail's own model (its scorer was calibrated
    on it); when that is also the index's, in one pass: sentences that overlapping chunks share are embedded
    once, and the length-sorted batches mix chunks and sentences without padding either."""
    from stratus.guard.grounding import EMBEDDING_MODEL as SENTENCE_MODEL

    sentences = [extractive.split_sentences(ch.text) for ch in chunks]
    unique = list(dict.fromkeys(s for group in sentences for s in group))
    texts = [ch.text for ch in chunks]
    if embedder.model_name == SENTENCE_MODEL:
        vectors, tokens = embed_metered_texts(embedder, texts + unique, batch_size)
        chunk_vectors, rows, dims = vectors[: len(chunks)], vectors[len(chunks):], embedder.dimensions
    else:  # a hosted index model: it is billed for the chunks only
        chunk_vectors, tokens = embed_metered_texts(embedder, texts, batch_size)
        sentence_embedder = get_embedder(SENTENCE_MODEL)
        rows, dims = embed_texts(sentence_embedder, unique, batch_size), sentence_embedder.dimensions
    row = {s: rows[i] for i, s in enumerate(unique)}
    by_chunk = [np.array([row[s] for s in group], dtype=np.float32).reshape(len(group), dims) for group in sentences]
    return EmbeddedChunks(chunk_vectors, tokens, sentences, by_chunk, SENTENCE_MODEL)


def _bill(conn: Any, tenant_id: str, tokens_by_model: dict[str, int], settings: Settings) -> None:
    """The tenant pays for what its documents cost to embed with hosted models (`tokens_by_model` holds
    only the embedders a provider bills)."""
    if not tokens_by_model:
        return
    from stratus.llm.pricing import embedding_cost_usd  # only then: the catalog is no cold-start cost

    record_usage(conn, tenant_id, tokens=sum(tokens_by_model.values()),
                 cost_usd=sum(embedding_cost_usd(m, t, settings) for m, t in tokens_by_model.items()))


def ingest_document(
    tenant_id: str,
    key: str,
    data: bytes,
    source: SourceObject,
    *,
    confirm: Confirm | None = None,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
    conn: Any = None,
) -> IngestResult:
    """Make `data` the active version of document `key` (the path below tenants/<tenant_id>/).

    `source` describes the bytes (etag, LastModified, content type). Permanent document problems are
    recorded on the document and returned as `failed`; dependency failures raise. Safe to repeat.
    """
    settings = settings or get_settings()
    clock = _Clock()

    def result(status: str, **kw: Any) -> IngestResult:
        return IngestResult(status, tenant_id, key, timings=clock.timings, **kw)

    with clock.stage("db", "lookup", tenant_id=tenant_id), tenant_transaction(tenant_id, conn) as c:
        documents.ensure_tenant(c, tenant_id)
        current = documents.get_document(c, tenant_id, key)
        wanted = embedding_state.get(c, tenant_id)
    if current is not None and documents.is_stale(current, source):
        return result("skipped", version=current.version, reason="stale: a newer version is already applied")

    try:
        with clock.stage("extract", size=len(data)):
            doc = extract(data, key, content_type=source.content_type, max_bytes=settings.max_document_bytes)
    except PERMANENT as err:
        return _fail(tenant_id, key, source, err, confirm=confirm, conn=conn, clock=clock)
    content_hash = doc.content_hash(content_salt(settings))

    def unchanged(doc_state: DocumentState) -> bool:
        return doc_state.status == "ready" and doc_state.content_hash == content_hash

    extra: dict[str, tuple[np.ndarray, int]] = {}  # model -> (vectors, tokens billed)
    if current is None or not unchanged(current):
        embedder = embedder or get_embedder(settings.embedding_model, settings)
        with clock.stage("chunk") as step:
            chunks = chunk_document(
                doc,
                embedder,
                max_tokens=settings.chunk_max_tokens,
                overlap_tokens=settings.chunk_overlap_tokens,
            )
            step.annotate(chunks=len(chunks))
        try:
            with clock.stage("embed", model=settings.embedding_model):
                embedded = embed_chunks(embedder, chunks, settings.embed_batch_size)
            # Other models the tenant uses (its query model, a re-embedding's target, the previous model kept
            # for rollback) get their vectors now too, before any lock; the store re-checks the set under a lock.
            for model in tenant_models.extra_of(wanted, settings):
                with clock.stage("embed", model=model):
                    extra[model] = embed_metered_texts(get_embedder(model, settings), [ch.text for ch in chunks],
                                                       settings.embed_batch_size)
        except Unsupported as err:
            return _fail(tenant_id, key, source, err, confirm=confirm, conn=conn, clock=clock)

    with clock.stage("db", "store", tenant_id=tenant_id), tenant_transaction(tenant_id, conn) as c:
        models_now = tenant_models.extra_models(c, tenant_id, settings)  # first: the lock order reindex uses
        locked = documents.lock_document(c, tenant_id, key)
        if documents.is_stale(locked, source):
            return result(
                "skipped", version=locked.version, reason="stale: a newer version is already applied"
            )
        if unchanged(locked):
            documents.mark_unchanged(c, locked, source)
            return result("unchanged", version=locked.version, chunk_count=locked.chunk_count)
        if confirm is not None and not confirm():
            return result(
                "skipped", version=locked.version, reason="superseded: the object changed while ingesting"
            )
        if current is not None and unchanged(current):
            # We skipped embedding because our content was active, but a concurrent ingest replaced it
            # meanwhile. Rare; retrying re-reads the document state (and, on the S3 path, the object).
            raise TransientError(f"document {key!r} changed concurrently; retry")
        version = documents.replace_version(
            c,
            locked,
            source,
            title=doc.title,
            content_hash=content_hash,
            chunks=chunks,
            embeddings=embedded.vectors,
            embedding_model=settings.embedding_model,
        )
        assert embedder is not None, "set wherever new chunks were embedded"
        billed = {embedder.model_name: embedded.tokens} if is_billed(embedder) else {}
        ids = embedding_state.chunk_ids(c, locked.id, version)
        for model in models_now:  # a re-embedding started since the first read: embed here (rare)
            other = get_embedder(model, settings)
            more = extra.get(model)
            if more is None:
                more = embed_metered_texts(other, [ch.text for ch in chunks], settings.embed_batch_size)
            embedding_state.put_vectors(c, tenant_id, model, ids, more[0])
            if is_billed(other):
                billed[model] = more[1]
        _bill(c, tenant_id, billed, settings)
        chunk_sentences.store(c, tenant_id, locked.id, version, sentences=embedded.sentences,
                              vectors=embedded.sentence_vectors, embedding_model=embedded.sentence_model)
    log.info("ingested %s/%s v%d (%d chunks)", tenant_id, key, version, len(chunks))
    return result("ingested", version=version, chunk_count=len(chunks))


def record_document_failure(
    tenant_id: str,
    key: str,
    source: SourceObject,
    err: StratusError,
    *,
    confirm: Confirm | None = None,
    conn: Any = None,
) -> IngestResult:
    """Record a permanent problem with the current object (e.g. too large to fetch) on its document."""
    return _fail(tenant_id, key, source, err, confirm=confirm, conn=conn, clock=_Clock())


def _fail(
    tenant_id: str,
    key: str,
    source: SourceObject,
    err: StratusError,
    *,
    confirm: Confirm | None,
    conn: Any,
    clock: _Clock,
) -> IngestResult:
    reason = f"{err.code}: {err.message}"
    with clock.stage("db", "record_failure", error_code=err.code), tenant_transaction(tenant_id, conn) as c:
        documents.ensure_tenant(c, tenant_id)
        locked = documents.lock_document(c, tenant_id, key)
        if documents.is_stale(locked, source) or (confirm is not None and not confirm()):
            return IngestResult(
                "skipped",
                tenant_id,
                key,
                version=locked.version,
                reason="superseded: " + reason,
                timings=clock.timings,
            )
        documents.record_failure(c, locked, reason)
    log.warning("document %s/%s refused: %s", tenant_id, key, reason)
    return IngestResult(
        "failed", tenant_id, key, version=locked.version or None, reason=reason, timings=clock.timings
    )


def remove_document(
    tenant_id: str,
    key: str,
    *,
    removed_at: datetime | None = None,
    confirm: Confirm | None = None,
    conn: Any = None,
) -> IngestResult:
    """The source is gone: drop the document's chunks (a `deleted` row stays as a tombstone).

    With `confirm` (e.g. "the object is still absent"), that check decides under the row lock;
    without it, a removal older than the applied version (`removed_at`) is ignored.
    """
    clock = _Clock()
    with clock.stage("db", "remove", tenant_id=tenant_id), tenant_transaction(tenant_id, conn) as c:
        current = documents.get_document(c, tenant_id, key)
        if current is None or current.status == "deleted":
            return IngestResult("skipped", tenant_id, key, reason="not indexed", timings=clock.timings)
        locked = documents.lock_document(c, tenant_id, key)
        if confirm is not None:
            if not confirm():
                return IngestResult(
                    "skipped",
                    tenant_id,
                    key,
                    version=locked.version,
                    reason="the object exists again",
                    timings=clock.timings,
                )
        elif removed_at and locked.source_modified_at and removed_at < locked.source_modified_at:
            return IngestResult(
                "skipped",
                tenant_id,
                key,
                version=locked.version,
                reason="stale: the document changed after this removal",
                timings=clock.timings,
            )
        documents.delete_document(c, locked, removed_at)
    log.info("deleted %s/%s", tenant_id, key)
    return IngestResult("deleted", tenant_id, key, version=locked.version, timings=clock.timings)
