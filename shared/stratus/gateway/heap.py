"""The gateway process's garbage collector: the objects that live as long as the process (modules, the
app, routes, pydantic schemas, SDK clients, settings) are moved out of its reach once, after the first
request has been answered.

CPython's cyclic collector walks every tracked object of the generations it collects. A warm gateway
holds a few hundred thousand of them that never die, and each full (generation 2) collection walked them
all: in bench/gateway_overhead.py's load these pauses ran to hundreds of milliseconds under contention and
were the tail of the latency (docs/performance.md). `gc.freeze()` moves the objects alive at that moment to
a permanent generation that collections skip; the collector still runs, on what requests allocate.

It happens after the first answered request, not at import: the request path imports its heavy modules
lazily (cold start), and those are the objects worth freezing. The collection before it keeps the
garbage of start-up from being frozen with them (it would never be freed). It runs once per process, in
the first request's after-response task, so no caller waits for it.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_frozen = False


def freeze_once() -> bool:
    """Collect, then freeze what survives; only the first call in a process does anything (True)."""
    global _frozen
    if _frozen:
        return False
    with _lock:
        if _frozen:
            return False
        gc.collect()
        gc.freeze()
        _frozen = True
    return True
