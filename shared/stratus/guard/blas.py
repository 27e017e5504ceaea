"""numpy's BLAS (OpenBLAS) on one thread for a block of small products.

The guard's products are small (spaCy's NER, the neighbour bank's similarities), and OpenBLAS's second
thread only fights the embedder's and the other requests' threads for the CPU: on a busy 2-core machine a
63-token NER run took 90 ms instead of 5 (docs/guard.md, PII). The limit is process-wide, so it is set and
restored under one lock: two blocks in threads of one process never overlap, and neither restores the
limit under the other. threadpoolctl ships in the guard layer (the functions that run the rails); where
it is absent the block runs as it is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_controller: Any = None


@contextmanager
def one_thread() -> Iterator[None]:
    global _controller
    with _lock:
        if _controller is None:
            try:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()  # numpy is loaded by now: its OpenBLAS is found
            except Exception:  # noqa: BLE001 - absent (a function without the guard layer) or unusable: no limit
                _controller = False
        if _controller is False:
            yield
            return
        with _controller.limit(limits=1, user_api="blas"):
            yield
