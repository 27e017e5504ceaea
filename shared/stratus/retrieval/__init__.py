"""Hybrid retrieval: BM25 + dense vectors, fused by reciprocal rank fusion, optional reranking."""
