"""Cache-hit latency: exact and semantic lookups with ~5,000 entries in one tenant and one scope.

    python -m bench.cache_hit            (starts its own embedded PostgreSQL; or set DATABASE_URL)

Exact: one indexed UPDATE ... RETURNING. Semantic: the question's MiniLM embedding plus an exact scan of
the scope (no HNSW; see docs/cache.md), measured with and without the embedding. Entry questions are
real-looking variants so the vectors are not uniformly random.
"""

from __future__ import annotations

import os
import random
import time
import uuid

from bench.common import ROOT, database, record, summary_ms

ENTRIES = int(os.environ.get("BENCH_CACHE_ENTRIES", "5000"))
ROUNDS = 200

_SUBJECTS = ["password", "invoice", "subscription", "API key", "VPN client", "dashboard", "team", "workspace",
             "order", "refund", "laptop", "expense report", "meeting room", "guest", "webhook", "export"]
_VERBS = ["reset", "find", "cancel", "rotate", "download", "share", "create", "delete", "track", "update",
          "configure", "approve", "book", "invite", "debug", "schedule"]
_FORMS = ["How do I {v} my {s}?", "Where can I {v} the {s}?", "Who can {v} a {s} for project {n}?",
          "Why can't I {v} the {s} in region {n}?", "What happens when I {v} the {s} twice?"]


def _questions(n: int, rng: random.Random) -> list[str]:
    return [rng.choice(_FORMS).format(v=rng.choice(_VERBS), s=rng.choice(_SUBJECTS), n=i) for i in range(n)]


def run(url: str) -> dict:
    from stratus.cache import CacheScope, embed_question, lookup, store
    from stratus.db import documents
    from stratus.db.connection import connect, tenant_transaction
    from stratus.embeddings import get_embedder
    from stratus.llm.types import ContextPassage

    rng = random.Random(7)
    tenant = f"bench-cache-{uuid.uuid4().hex[:6]}"
    scope = CacheScope(tenant, "prompt-hash", "fast", "params-hash")
    passages = [ContextPassage(number=1, chunk_id=1, document_id="d", document_version=1, source_key="d.md",
                               text="t")]
    questions = _questions(ENTRIES, rng)
    vectors = get_embedder("all-MiniLM-L6-v2-int8").embed(questions)
    conn = connect(url)
    with tenant_transaction(tenant, conn):
        documents.ensure_tenant(conn, tenant)
        for q, v in zip(questions, vectors, strict=True):
            store(conn, scope, q, passages, [1], v, {"text": "cached [1]"}, ttl_s=3600,
                  embedding_model="all-MiniLM-L6-v2-int8")
    conn.execute("ANALYZE response_cache")
    conn.commit()

    def timed(fn) -> list[float]:  # noqa: ANN001
        samples = []
        for i in range(ROUNDS):
            start = time.perf_counter()
            with tenant_transaction(tenant, conn):
                fn(i)
            samples.append(time.perf_counter() - start)
        return samples

    probes = [rng.choice(questions) for _ in range(ROUNDS)]
    # Paraphrases that should hit semantically ("How do I" -> "How can I"), and their embeddings.
    para = [q.replace("How do I", "How can I").replace("Where can I", "Where do I") for q in probes]
    para_vecs = get_embedder("all-MiniLM-L6-v2-int8").embed(para)
    exact = timed(lambda i: lookup(conn, scope, probes[i].upper(), passages, None, semantic=False, threshold=0.94))
    hits = []
    semantic_db = timed(lambda i: hits.append(lookup(conn, scope, para[i] + " please", passages, para_vecs[i],
                                                     semantic=True, threshold=0.94)))
    semantic_full = timed(lambda i: lookup(conn, scope, para[i] + " please", passages,
                                           embed_question(para[i] + " please"), semantic=True, threshold=0.94))
    embed_only = timed(lambda i: embed_question(para[i]))
    conn.close()
    return {
        "entries_in_scope": ENTRIES,
        "exact_hit": summary_ms(exact),
        "semantic_lookup_db_only": summary_ms(semantic_db),
        "semantic_lookup_with_embedding": summary_ms(semantic_full),
        "query_embedding_only": summary_ms(embed_only),
        "semantic_hit_rate_on_paraphrases": round(sum(h is not None for h in hits) / len(hits), 3),
    }


def main(url: str | None = None) -> dict:
    with database(url, ROOT / ".stratus" / "bench-cache" / "pg") as db_url:
        result = run(db_url)
    record("cache_hit", result)
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
