"""Blue/green re-embedding of one tenant: the steps in order.

1. `start`: record the target model; from then on ingestion writes its vectors too.
2. `step` (repeated, any process, any number of times): embed one bounded batch of the tenant's chunks that
   lack a target vector, above the persisted cursor, and store them with the new cursor in one transaction,
   so that a crash or a Lambda timeout loses at most the batch in flight.
3. `step` finding nothing above the cursor: under the state row's lock, check that no chunk lacks a target
   vector (one committed meanwhile below the cursor sends the cursor back to 0) and switch the tenant's
   query model in that same transaction: queries see the old model's complete vectors or the new one's.
4. `rollback` swaps query and previous model back; `drop_previous` deletes the previous model's vectors
   once every warm process has seen the switch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from stratus.config import Settings
from stratus.db import embedding_state
from stratus.db.chunks import DENSE_INDEXES
from stratus.db.connection import tenant_transaction
from stratus.db.embedding_state import EmbeddingState
from stratus.db.vector_index import model_dimensions
from stratus.embeddings import embed_metered, get_embedder, is_billed
from stratus.errors import InvalidInput, NotFound
from stratus.reindex import models

log = logging.getLogger(__name__)
BATCH = 128  # chunks per step: a few seconds of offline inference, well inside a Lambda's timeout
DROP_BATCH = 5_000


@dataclass(frozen=True)
class Progress:
    tenant_id: str
    query_model: str
    target_model: str | None
    previous_model: str | None
    status: str  # 'idle' (nothing running), 'running', 'switched' (this call completed the switch)
    embedded: int
    total: int
    cursor: int
    started_at: datetime | None
    switched_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        def ts(v: datetime | None) -> int | None:
            return int(v.timestamp()) if v else None

        return {"tenant_id": self.tenant_id, "query_model": self.query_model, "target_model": self.target_model,
                "previous_model": self.previous_model, "status": self.status, "embedded": self.embedded,
                "total": self.total, "cursor": self.cursor, "started_at": ts(self.started_at),
                "switched_at": ts(self.switched_at)}


def _progress(state: EmbeddingState | None, tenant_id: str, settings: Settings, status: str | None = None) -> Progress:
    if state is None:
        return Progress(tenant_id, settings.embedding_model, None, None, status or "idle", 0, 0, 0, None, None)
    return Progress(tenant_id, state.query_model or settings.embedding_model, state.target_model,
                    state.previous_model, status or ("running" if state.target_model else "idle"),
                    state.embedded, state.total, state.cursor, state.started_at, state.switched_at)


def _check_model(model: str) -> None:
    try:
        get_embedder(model)
    except ValueError as err:
        raise InvalidInput(f"model {model!r} is not an embedding model this deployment can run",
                           field="model") from err
    if not (DENSE_INDEXES.get(model) or model_dimensions(model)):  # dense search could not query it after the switch
        raise InvalidInput(f"model {model!r} has no vector index in this deployment", field="model")


def status(conn: psycopg.Connection | None, tenant_id: str, settings: Settings) -> Progress:
    with tenant_transaction(tenant_id, conn) as tx:
        _require_tenant(tx, tenant_id)
        return _progress(embedding_state.get(tx, tenant_id), tenant_id, settings)


def start(conn: psycopg.Connection | None, tenant_id: str, model: str, settings: Settings) -> Progress:
    """Begin (or, for the same model, resume) moving the tenant to `model`. Idempotent."""
    _check_model(model)
    with tenant_transaction(tenant_id, conn) as tx:
        _require_tenant(tx, tenant_id)
        embedding_state.ensure(tx, tenant_id)
        state = embedding_state.get(tx, tenant_id, lock="update")
        assert state is not None
        current = state.query_model or settings.embedding_model
        if state.target_model == model:
            return _progress(state, tenant_id, settings)
        if state.target_model is not None:
            raise InvalidInput(f"a re-embedding to {state.target_model!r} is running; it must finish first",
                               field="model")
        if model == current:
            raise InvalidInput(f"the tenant's queries already use {model!r}", field="model")
        if state.previous_model not in (None, model):
            # At most two models are kept: a third would leave the oldest's vectors unmaintained.
            raise InvalidInput(f"the previous model {state.previous_model!r} is still kept; roll back to it, move "
                               "to it, or drop it first (--drop-previous)", field="model")
        total = embedding_state.count_missing(tx, tenant_id, model)
        # A previous model that is the new target keeps its (complete) vectors: only the gap is embedded.
        embedding_state.update(tx, tenant_id, target_model=model, cursor=0, embedded=0, total=total,
                               started_at=datetime.now(UTC))
        log.info("tenant %s: re-embedding %d chunks from %s into %s", tenant_id, total, current, model)
        return _progress(embedding_state.get(tx, tenant_id), tenant_id, settings)


def step(conn: psycopg.Connection | None, tenant_id: str, settings: Settings, *, batch: int = BATCH) -> Progress:
    """One bounded batch; switches the query model when nothing is left. Safe to repeat and to run after a
    crash: the cursor and the vectors of a batch commit together, and a batch written twice writes nothing twice."""
    with tenant_transaction(tenant_id, conn) as tx:
        state = embedding_state.get(tx, tenant_id)
        if state is None or state.target_model is None:
            return _progress(state, tenant_id, settings)
        model, cursor = state.target_model, state.cursor
        todo = embedding_state.missing(tx, tenant_id, model, after=cursor, limit=batch)
    if todo:  # inference outside any transaction: no lock is held while the model runs
        embedder = get_embedder(model, settings)
        embedded = embed_metered(embedder, [text for _, text in todo])
        if embedded.failures:  # a chunk the model refuses: the move cannot complete; say which
            i, err = min(embedded.failures.items())
            raise InvalidInput(f"chunk {todo[i][0]} cannot be embedded by {model}: {err.message}", field="model")
        with tenant_transaction(tenant_id, conn) as tx:
            state = embedding_state.get(tx, tenant_id, lock="update")
            if state is None or state.target_model != model:  # rolled back or restarted meanwhile
                return _progress(state, tenant_id, settings)
            if is_billed(embedder):  # the tenant pays for its re-embedding, batch by batch with the vectors
                from stratus.db.limits import record_usage
                from stratus.llm.pricing import embedding_cost_usd

                record_usage(tx, tenant_id, tokens=embedded.input_tokens,
                             cost_usd=embedding_cost_usd(model, embedded.input_tokens, settings))
            written = embedding_state.put_vectors(tx, tenant_id, model, [cid for cid, _ in todo], embedded.vectors)
            embedding_state.update(tx, tenant_id, cursor=max(state.cursor, todo[-1][0]),
                                   embedded=state.embedded + written)
            return _progress(embedding_state.get(tx, tenant_id), tenant_id, settings)
    return _finish(conn, tenant_id, model, settings)


def _finish(conn: psycopg.Connection | None, tenant_id: str, model: str, settings: Settings) -> Progress:
    with tenant_transaction(tenant_id, conn) as tx:
        # FOR UPDATE waits for every ingestion holding the row FOR SHARE: their chunks are committed (with a
        # target vector) before the count, and none can commit between the count and the switch.
        state = embedding_state.get(tx, tenant_id, lock="update")
        if state is None or state.target_model != model:
            return _progress(state, tenant_id, settings)
        if embedding_state.count_missing(tx, tenant_id, model):
            embedding_state.update(tx, tenant_id, cursor=0)  # a chunk committed below the cursor meanwhile
            return _progress(embedding_state.get(tx, tenant_id), tenant_id, settings)
        embedding_state.update(tx, tenant_id, query_model=model, target_model=None,
                               previous_model=state.query_model or settings.embedding_model,
                               switched_at=datetime.now(UTC))
        switched = embedding_state.get(tx, tenant_id)
    models.forget(tenant_id)
    log.info("tenant %s: queries switched to %s", tenant_id, model)
    return _progress(switched, tenant_id, settings, "switched")


def run(conn: psycopg.Connection | None, tenant_id: str, settings: Settings, *, batch: int = BATCH,
        max_steps: int | None = None) -> Progress:
    """Steps until the switch (or `max_steps`, e.g. what fits in one Lambda invocation)."""
    progress = status(conn, tenant_id, settings)
    steps = 0
    while progress.target_model is not None and (max_steps is None or steps < max_steps):
        progress = step(conn, tenant_id, settings, batch=batch)
        steps += 1
    return progress


def rollback(conn: psycopg.Connection | None, tenant_id: str, settings: Settings) -> Progress:
    """Queries go back to the previous model (its vectors were kept complete); a running re-embedding is
    abandoned (its vectors stay until `drop_previous` or a restart reuses them)."""
    with tenant_transaction(tenant_id, conn) as tx:
        _require_tenant(tx, tenant_id)
        state = embedding_state.get(tx, tenant_id, lock="update")
        if state is None or (state.previous_model is None and state.target_model is None):
            raise InvalidInput("nothing to roll back: no previous model is kept", field="rollback")
        if state.target_model is not None:  # abandon the running one; the query model never changed
            embedding_state.update(tx, tenant_id, target_model=None, cursor=0, embedded=0, total=0)
        else:
            current = state.query_model or settings.embedding_model
            embedding_state.update(tx, tenant_id, query_model=state.previous_model, previous_model=current,
                                   switched_at=datetime.now(UTC))
        after = embedding_state.get(tx, tenant_id)
    models.forget(tenant_id)
    return _progress(after, tenant_id, settings)


def drop_previous(conn: psycopg.Connection | None, tenant_id: str, settings: Settings, *,
                  min_age_s: float = 2 * models.QUERY_MODEL_TTL_S) -> Progress:
    """Delete the previous model's vectors (in bounded transactions); rollback is impossible afterwards.
    Refused until `min_age_s` after the switch: a warm process may still embed with the previous model."""
    with tenant_transaction(tenant_id, conn) as tx:
        _require_tenant(tx, tenant_id)
        state = embedding_state.get(tx, tenant_id, lock="update")
        if state is None or state.previous_model is None:
            raise InvalidInput("no previous model is kept", field="drop_previous")
        if state.target_model == state.previous_model:
            raise InvalidInput("a running re-embedding targets the previous model", field="drop_previous")
        age = (datetime.now(UTC) - state.switched_at).total_seconds() if state.switched_at else min_age_s
        if age < min_age_s:
            raise InvalidInput(f"the switch is {age:.0f} s old; wait {min_age_s:.0f} s so that no warm process "
                               "still queries the previous model", field="drop_previous")
        previous = state.previous_model
        # From here ingestion stops writing it; its vectors on the chunk rows (the deployment's model) stay.
        embedding_state.update(tx, tenant_id, previous_model=None)
    while True:
        with tenant_transaction(tenant_id, conn) as tx:
            if not embedding_state.drop_vectors(tx, tenant_id, previous, limit=DROP_BATCH):
                break
    return status(conn, tenant_id, settings)


def _require_tenant(conn: psycopg.Connection, tenant_id: str) -> None:
    if conn.execute("SELECT 1 FROM tenants WHERE id = %s", [tenant_id]).fetchone() is None:
        raise NotFound(f"unknown tenant {tenant_id!r}", field="tenant_id")
