"""Ingestion: fetch, extract, chunk, embed, and swap in a new document version atomically.

May import: aws, config, db, embeddings, errors, spans, tenants. Never stratus_tools; no cycles
(pyproject.toml, [tool.importlinter]).
"""
