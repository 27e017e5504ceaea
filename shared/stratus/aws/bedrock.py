"""The Bedrock runtime clients (bedrock-runtime for chat, bedrock-agent-runtime for Rerank), built once per
(service, region, endpoint, timeout) and reused by warm Lambdas.

botocore fixes the read timeout when a client is built, so a per-call timeout selects a client by the
timeout rounded up to a coarse step (0.1 s below 2 s, whole seconds above): a handful of clients per
process, never one per call. botocore's retries are off: the model router (and the reranker) retry.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from stratus.config import get_settings

# As for the other providers (stratus.llm.providers._clients): a connect that takes longer will not succeed.
CONNECT_TIMEOUT_S = 2.0


def _timeout_step(timeout: float) -> float:
    return math.ceil(timeout * 10) / 10 if timeout < 2 else float(math.ceil(timeout))


@functools.lru_cache(maxsize=32)
def _client(region: str, endpoint_url: str | None, read_timeout: float, service: str = "bedrock-runtime") -> Any:
    import boto3  # on first use only: cold starts that never call Bedrock do not pay for it
    from botocore.config import Config

    return boto3.session.Session().client(
        service, region_name=region, endpoint_url=endpoint_url,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=read_timeout,
                      connect_timeout=min(read_timeout, CONNECT_TIMEOUT_S), tcp_keepalive=True),
    )


def runtime_client(*, region: str | None, endpoint_url: str | None, timeout: float) -> Any:
    """A bedrock-runtime client: the deployment's region and endpoint, else the settings' defaults."""
    settings = get_settings()
    return _client(region or settings.aws_region, endpoint_url or settings.bedrock_endpoint_url,
                   _timeout_step(timeout))


def agent_runtime_client(*, region: str | None, endpoint_url: str | None, timeout: float) -> Any:
    """A bedrock-agent-runtime client (the Rerank API): the given region and endpoint, else the settings'."""
    return _client(region or get_settings().aws_region, endpoint_url, _timeout_step(timeout), "bedrock-agent-runtime")


def reset_clients() -> None:
    _client.cache_clear()
