"""Every fault of every provider, as the official `openai` SDK sees it through the gateway.

Each provider's loopback server (its real wire protocol) answers one request with a fault; the client must
get the exception class OpenAI itself would raise for that situation: BadRequestError for a request no model
accepts, RateLimitError (with retry-after) when the provider rate limited it, InternalServerError for the
provider's own trouble (502 failed, 503 overloaded, 504 too slow, 502 without details when the provider
refused the gateway's credentials). Plain and streamed requests alike (a stream that fails before its first
byte is a plain JSON error). The adapters' classification of each wire fault is tested per provider in
tests/integration/test_provider_*.py; this is the whole path, SDK to SDK.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from stratus.config import Settings
from stratus_tools.local.server import GatewayServer
from tests.integration.gateway_support import (
    aws_test_credentials,
    provider_settings,
    start_provider_upstreams,
    tenant_with_key,
)
from tests.support.upstreams import Fault, Upstream

TIMEOUT_S = 1.0
MODELS = {"openai": "gpt-loop", "anthropic": "claude-loop", "bedrock": "amazon.nova-loop-v1:0"}  # one deployment each

# (fault, SDK exception, status, error code); every provider answers these.
COMMON = [
    pytest.param(Fault.status(429, retry_after=1), openai.RateLimitError, 429, "provider_rate_limited", id="429"),
    pytest.param(Fault.status(500), openai.InternalServerError, 502, "all_deployments_failed", id="500"),
    pytest.param(Fault.status(503), openai.InternalServerError, 503, "all_deployments_failed", id="503"),
    pytest.param(Fault.delay(TIMEOUT_S + 1.5), openai.InternalServerError, 504, "timeout", id="timeout"),
    pytest.param(Fault.reset(), openai.InternalServerError, 502, "all_deployments_failed", id="reset"),
    pytest.param(Fault.malformed(), openai.InternalServerError, 502, "all_deployments_failed", id="malformed"),
    pytest.param(Fault.context_length(), openai.BadRequestError, 400, "context_length_exceeded", id="context"),
    pytest.param(Fault.auth(), openai.InternalServerError, 502, "authentication_failed", id="auth"),
]
OWN = {
    "openai": [pytest.param(Fault.status(400), openai.BadRequestError, 400, "invalid_request", id="400")],
    "anthropic": [pytest.param(Fault.status(529), openai.InternalServerError, 503, "all_deployments_failed",
                               id="529-overloaded")],
    "bedrock": [pytest.param(Fault.status(408), openai.InternalServerError, 504, "timeout", id="408-model-timeout"),
                pytest.param(Fault.status(424), openai.InternalServerError, 502, "all_deployments_failed",
                             id="424-model-error")],
}
CASES = [pytest.param(provider, *case.values, id=f"{provider}-{case.id}")
         for provider in MODELS for case in [*COMMON, *OWN[provider]]]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    yield from start_provider_upstreams()


@pytest.fixture(scope="module")
def settings(pg_url: str, upstreams: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return provider_settings(pg_url, upstreams, tmp_path_factory, MODELS,
                             prefix="faults", timeout_s=TIMEOUT_S, max_output_tokens=500)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    aws_test_credentials(monkeypatch)


@pytest.fixture(scope="module")
def key(pg_url: str) -> str:
    return tenant_with_key(pg_url, "faults")[1]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(("provider", "fault", "exception", "status", "code"), CASES)
def test_each_fault_raises_the_exception_openai_would(server: GatewayServer, upstreams: dict[str, Upstream],
                                                      settings: Settings, key: str, provider: str, fault: Fault,
                                                      exception: type[openai.APIStatusError], status: int,
                                                      code: str, stream: bool) -> None:
    from stratus.llm.router import default_breaker

    default_breaker(settings).success(f"faults-{provider}")  # each case meets its fault on a closed circuit
    up = upstreams[provider]
    up.clear()
    up.inject(fault)
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=f"via-{provider}", stream=stream,
                                       messages=[{"role": "user", "content": "How are API keys rotated?"}])
    err = caught.value
    assert type(err) is exception and err.status_code == status, (type(err), err.status_code, err.message)
    assert err.code == code, err.body
    if status == 429:
        assert err.response.headers["retry-after"] == "1"
    if code == "authentication_failed":  # the operator's problem: nothing about the account, and no retry
        assert "x-api-key" not in err.message and "sk-" not in err.message
        assert err.response.headers["x-should-retry"] == "false"
    assert len(up.requests) == 1  # no retries configured: one call reached the provider
