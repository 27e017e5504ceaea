"""boto3 clients, created once per process (warm Lambdas reuse them) and pointed at moto locally."""

from __future__ import annotations

import functools
from typing import Any

from stratus.config import get_settings


@functools.cache
def client(service: str, *, read_timeout: int = 30, signature_version: str | None = None) -> Any:
    import boto3  # imported on first use: ~180 ms that a handler's cold start should not pay early
    from botocore.config import Config

    settings = get_settings()
    return boto3.session.Session().client(
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=read_timeout,
                      signature_version=signature_version),
    )


def reset_clients() -> None:
    client.cache_clear()
