"""The official `openai` SDK, imported so that a concurrent import of legacy `httpx` cannot break it.

The SDK (3.x, on httpx2) looks up the legacy `httpx` module in `sys.modules` on every request to convert
its types, without taking the import lock. spaCy (the PII rail's NER, loaded on first use in a worker
thread) imports `httpx` through its CLI; a request that reads `sys.modules["httpx"]` while that import is
half done fails with "partially initialized module 'httpx'" (seen as 500s on a fresh gateway's first
concurrent requests). Importing `httpx` here, where it is installed (a virtualenv with spaCy's CLI), makes
the first SDK import wait for any import of it in progress, so the SDK never sees it half done. It costs
the first provider call ~25-50 ms once per process, and nothing where `httpx` is absent: on Lambda, whose
GuardLayer ships spaCy without its CLI and so without `httpx` (layers/guard/defer_spacy_cli.py).
"""

from __future__ import annotations

try:
    import httpx  # noqa: F401
except ImportError:  # where httpx is not installed (Lambda): nothing can import it concurrently either
    pass

import openai

__all__ = ["openai"]
