"""Ingestion: fetch, extract, chunk, embed, and swap in a new document version atomically."""
