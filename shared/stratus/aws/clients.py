"""boto3 clients, created once per process (warm Lambdas reuse them) and pointed at moto locally."""

from __future__ import annotations

import functools
from typing import Any

from stratus.config import get_settings


@functools.cache
def client(service: str, *, read_timeout: int = 30, signature_version: str | None = None,
           max_attempts: int = 3, connect_timeout: int = 5) -> Any:
    """`max_attempts=1` for calls that must never be repeated by the SDK (a workflow run that timed out is
    still running: a retry would start a second one)."""
    import boto3  # imported on first use: ~180 ms that a handler's cold start should not pay early
    from botocore.config import Config

    settings = get_settings()
    return boto3.session.Session().client(
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=Config(retries={"mode": "standard", "total_max_attempts": max_attempts}, connect_timeout=connect_timeout,
                      read_timeout=read_timeout, signature_version=signature_version,
                      # An endpoint override (moto) takes the call as is: no "sync-" host prefix.
                      inject_host_prefix=settings.aws_endpoint_url is None),
    )


def reset_clients() -> None:
    client.cache_clear()
