"""What the gateway keeps of a sampled request for online evaluation: question, answer, the chunks it was
generated from and cited, latency and cost, with PII replaced by placeholders before anything is stored.

Runs after the response has been sent (a deferred write), for the requests `is_sampled` picks: the
redaction's cost (Presidio) is paid off the critical path and only for 1-2% of requests.
"""

from __future__ import annotations

from typing import Any


def record_sample(conn: Any, *, tenant_id: str, request_id: str, mode: str, question: str, response: Any,
                  latency_ms: float) -> None:
    from stratus.db import evals as store
    from stratus.db.connection import relax_commit, tenant_transaction
    from stratus.guard import pii
    from stratus.guard.policy import REQUEST_ENTITIES

    entities = list(REQUEST_ENTITIES)
    with tenant_transaction(tenant_id, conn):
        documents = "\n".join(store.chunk_texts(conn, tenant_id, list(response.chunk_ids)).values())
    asked = pii.redact(question, entities=entities)
    shown = pii.redact(response.text, asked.mapping, entities=entities)  # one value, one placeholder
    # PII in the answer that the caller did not send and the documents do not hold: the output_pii check.
    own = set(asked.mapping.values())
    leaked = sorted({f.type for f in shown.findings if f.text not in own and f.text not in documents})
    row = {"tenant_id": tenant_id, "request_id": request_id, "mode": mode, "model_alias": response.model_alias,
           "prompt_name": response.prompt.name, "prompt_version": response.prompt.version, "question": asked.text,
           "answer": shown.text, "chunk_ids": list(response.chunk_ids),
           "cited_chunk_ids": [c.chunk_id for c in response.citations], "latency_ms": latency_ms,
           "cost_usd": response.cost_usd, "facts": {"answer_pii": leaked, "cache": response.cache.status},
           "rollout_id": response.prompt.rollout_id}
    with tenant_transaction(tenant_id, conn, relaxed=True):
        relax_commit(conn)  # already: the transaction was opened relaxed
        store.insert_sample(conn, row)
