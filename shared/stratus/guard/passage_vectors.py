"""The stored sentence vectors of an answer's passages, put where the groundedness rail looks first.

Ingestion stores every chunk sentence's vector (stratus.db.chunk_sentences). Before the output rails run,
one query fetches those of the retrieved chunks and seeds the process's sentence-vector cache with them, so
groundedness embeds only the answer's own sentences. Sentences without a stored vector (chunks ingested
before migration 0020, a chunk indexed with another embedding model, a passage rewritten by the context rail)
are simply not seeded: the rail embeds them as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stratus.llm import extractive
from stratus.llm.types import ContextPassage


def prime(conn: Any, tenant_id: str, passages: Sequence[ContextPassage], embedding_model: str) -> int:
    """Seed the sentence-vector cache with the passages' stored vectors; returns how many were found."""
    from stratus.db import chunk_sentences
    from stratus.db.connection import tenant_transaction

    if not passages:
        return 0
    with tenant_transaction(tenant_id, conn) as c:
        stored = chunk_sentences.load(c, (p.chunk_id for p in passages), embedding_model)
    if not stored:
        return 0
    found = {}
    for passage in passages:
        for sentence in extractive.split_sentences(passage.text):
            vector = stored.get(chunk_sentences.digest(sentence))
            if vector is not None:
                found[sentence] = vector
    extractive.sentence_vectors.seed(embedding_model, found)
    return len(found)
