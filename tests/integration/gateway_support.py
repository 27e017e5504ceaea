"""Helpers for the gateway's integration tests: tenants with keys, and a loopback model catalog."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from stratus.db import documents
from stratus.db.connection import connect, tenant_transaction
from tests.support.upstreams import AnthropicUpstream, BedrockUpstream, OpenAIUpstream, Upstream


def tenant_with_key(url: str, prefix: str = "t", scopes: Iterable[str] = ("inference", "documents"),
                    **limits: int | None) -> tuple[str, str]:
    """A fresh tenant and a key for it: (tenant id, key text)."""
    from stratus.gateway.keys import create_key

    tenant_id = f"{prefix}-{uuid.uuid4().hex[:12]}"
    conn = connect(url)
    try:
        with tenant_transaction(tenant_id, conn):
            documents.ensure_tenant(conn, tenant_id)
        key, _ = create_key(conn, tenant_id, name="test", scopes=tuple(scopes), **limits)
    finally:
        conn.close()
    return tenant_id, key


def key_for(url: str, tenant_id: str, scopes: Iterable[str] = ("inference", "documents")) -> str:
    """Another key for an existing tenant."""
    from stratus.gateway.keys import create_key

    conn = connect(url)
    try:
        return create_key(conn, tenant_id, name="test", scopes=tuple(scopes))[0]
    finally:
        conn.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin_auth(url: str) -> dict[str, str]:
    """Headers with an operator's key: it belongs to an "ops" tenant and holds only the admin scope."""
    return auth(tenant_with_key(url, "ops", scopes=["admin"])[1])


def fresh_rate_window(margin_s: float = 8.0) -> None:
    """Rate limits count in UTC minute windows: a test that fills one must not straddle a rollover."""
    import time
    from datetime import UTC, datetime

    left = 60 - (datetime.now(UTC).second + datetime.now(UTC).microsecond / 1e6)
    if left < margin_s:
        time.sleep(left + 0.05)


def loop_catalog(tmp_path_factory: pytest.TempPathFactory, base_url: str, *, timeout_s: float,
                 deployment: str = "loop-openai") -> str:
    """A models file with one OpenAI deployment at a loopback upstream, the alias `fast` its only route."""
    catalog = {"default_alias": "fast",
               "deployments": {deployment: {"provider": "openai", "model": "gpt-loop", "base_url": base_url,
                                            "timeout_s": timeout_s, "max_output_tokens": 500,
                                            "price": {"input": 2.0, "output": 8.0}}},
               "aliases": {"fast": [deployment]}}
    path = tmp_path_factory.mktemp("catalog") / "models.yaml"
    path.write_text(json.dumps(catalog))  # JSON is YAML
    return str(path)


# --- one loopback upstream per provider, one alias per provider ----------------------------------------------
UPSTREAM_CLASSES: dict[str, type[Upstream]] = {"openai": OpenAIUpstream, "anthropic": AnthropicUpstream,
                                               "bedrock": BedrockUpstream}


def start_provider_upstreams() -> Iterator[dict[str, Upstream]]:
    """Each provider's wire server, started (a module fixture's body: `yield from`)."""
    started = {name: cls().start() for name, cls in UPSTREAM_CLASSES.items()}
    try:
        yield started
    finally:
        for up in started.values():
            up.stop()


def provider_settings(pg_url: str, upstreams: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory,
                      models: dict[str, str], *, prefix: str, timeout_s: float, max_output_tokens: int,
                      aliases: dict[str, list[str]] | None = None) -> Any:
    """Settings whose catalog has a deployment `<prefix>-<provider>` at each provider's upstream (model
    `models[provider]`) and an alias `via-<provider>` for each, plus `aliases`; no retries, no cache."""
    from stratus.config import load_settings

    deployments = {f"{prefix}-{name}": {"provider": name, "model": model, "base_url": upstreams[name].base_url,
                                        "region": "us-east-1", "timeout_s": timeout_s,
                                        "max_output_tokens": max_output_tokens, "price": {"input": 1.0, "output": 2.0}}
                   for name, model in models.items()}
    catalog = {"default_alias": "via-openai", "deployments": deployments,
               "aliases": {f"via-{name}": [f"{prefix}-{name}"] for name in models} | (aliases or {})}
    path = tmp_path_factory.mktemp(prefix) / "models.yaml"
    path.write_text(json.dumps(catalog))
    return load_settings(database_url=pg_url, models_file=str(path), openai_api_key="sk-loop",
                         anthropic_api_key="sk-ant-loop", provider_mode="hosted", cache_enabled=False,
                         retry_attempts=0)


def aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # botocore signs; the loopback servers do not check
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


# One deployment per provider, each at its loopback server (the suites that drive the gateway through SDKs).
LOOP_MODELS = {"openai": "gpt-loop", "anthropic": "claude-loop", "bedrock": "amazon.nova-loop-v1:0"}


def loopback_gateway_fixtures(prefix: str, *, timeout_s: float = 2.0, max_output_tokens: int = 500) -> tuple[Any, ...]:
    """A module's `upstreams` and `settings` fixtures (LOOP_MODELS, aliases `via-<provider>`) and autouse AWS
    test credentials, to assign at module level: `upstreams, settings, aws = loopback_gateway_fixtures("x")`."""

    @pytest.fixture(scope="module", name="upstreams")
    def upstreams() -> Iterator[dict[str, Upstream]]:
        yield from start_provider_upstreams()

    @pytest.fixture(scope="module", name="settings")
    def settings(pg_url: str, upstreams: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory) -> Any:
        return provider_settings(pg_url, upstreams, tmp_path_factory, LOOP_MODELS, prefix=prefix,
                                 timeout_s=timeout_s, max_output_tokens=max_output_tokens)

    @pytest.fixture(autouse=True, name="aws_credentials")
    def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
        aws_test_credentials(monkeypatch)

    return upstreams, settings, aws_credentials


def guarded_loop_settings(pg_url: str, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Settings for the guard suites: the loopback OpenAI catalog, no retries, no cache."""
    from stratus.config import load_settings

    path = loop_catalog(tmp_path_factory, upstream.base_url, timeout_s=5)
    return load_settings(database_url=pg_url, models_file=path, openai_api_key="sk-loop", provider_mode="hosted",
                         cache_enabled=False, retry_attempts=0)


def tenant_with_guard_policy(url: str, prefix: str, rails: dict[str, Any]) -> tuple[str, str]:
    """tenant_with_key, with `rails` (if any) stored as the tenant's guard policy."""
    from stratus.guard.policy import set_policy

    tenant_id, key = tenant_with_key(url, prefix)
    if rails:
        conn = connect(url)
        try:
            set_policy(conn, tenant_id, rails)
        finally:
            conn.close()
    return tenant_id, key
