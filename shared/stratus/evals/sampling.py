"""Which requests online evaluation looks at: a pure function of the request id.

The gateway keeps the content of exactly these requests (PII-redacted, after answering) and the
scheduled sampler scores them, so a rerun picks the same requests and nothing needs coordinating. The
hash is SHA-256, not Python's hash(): the same id is sampled in every process and every release.
"""

from __future__ import annotations

import hashlib

_SCALE = float(1 << 64)


def sample_point(request_id: str) -> float:
    """Where the id falls in [0, 1): uniform over ids, stable forever."""
    digest = hashlib.sha256(request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def is_sampled(request_id: str, rate: float) -> bool:
    return rate > 0 and sample_point(request_id) < rate
