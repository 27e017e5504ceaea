"""JSON secrets from Secrets Manager, read once per container."""

from __future__ import annotations

import functools
import json

from stratus.aws.clients import client


@functools.cache
def json_secret(secret_arn: str) -> dict[str, str]:
    """The secret's JSON object; an empty or non-object secret reads as {} (nothing configured yet)."""
    raw = client("secretsmanager").get_secret_value(SecretId=secret_arn).get("SecretString") or "{}"
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items() if v} if isinstance(value, dict) else {}
