"""Hybrid retrieval: BM25 + dense vectors, fused by reciprocal rank fusion, optional reranking.

May import: config, db, embeddings, errors, spans, tenants, validation. Never stratus_tools; no cycles
(pyproject.toml, [tool.importlinter]).
"""
