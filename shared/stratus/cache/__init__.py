"""Response cache, exact and semantic, scoped to tenant, prompt version, model alias and context.

    from stratus.cache import CacheScope, params_hash, lookup, store

May import: config, db, embeddings, errors, llm. Never stratus_tools; no cycles (pyproject.toml,
[tool.importlinter]).
"""

from stratus.cache.keys import CacheScope, context_fingerprint, normalize_question, params_hash
from stratus.cache.service import CacheHit, embed_question, lookup, purge_expired, renumber_citations, store

__all__ = [
    "CacheHit", "CacheScope", "context_fingerprint", "embed_question", "lookup", "normalize_question",
    "params_hash", "purge_expired", "renumber_citations", "store",
]
