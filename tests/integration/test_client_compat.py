"""Clients people point at an OpenAI-compatible gateway, against Stratus with a recording loopback upstream:
the official `openai` SDK's async client, `.parse()` and `.stream()` helpers (here), and `litellm` and
`langchain-openai` (in their own virtualenv, .venv-compat, driven by tests/support/compat_clients.py).
For each: what the upstream received for every parameter the client set, and what the client got back.
(`client.responses`, the `anthropic` SDK and the OpenAI Agents SDK have their own suites:
test_gateway_responses_api.py, test_gateway_anthropic_api.py, test_agents_sdk.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from stratus.config import Settings
from stratus_tools.local.server import GatewayServer
from tests.integration.gateway_support import loopback_gateway_fixtures, tenant_with_key
from tests.support.upstreams import Upstream

ROOT = Path(__file__).resolve().parents[2]
COMPAT_PYTHON = ROOT / ".venv-compat" / "bin" / "python"


upstreams, settings, aws_credentials = loopback_gateway_fixtures("compat")


@pytest.fixture(scope="module")
def key(pg_url: str) -> str:
    return tenant_with_key(pg_url, "compat")[1]


@pytest.fixture
def up(upstreams: dict[str, Upstream]) -> Upstream:
    upstreams["openai"].clear()
    return upstreams["openai"]


class Answer(BaseModel):
    answer: str
    confidence: int


# --- the openai SDK's other entry points --------------------------------------------------------------
def test_the_async_client_answers_and_streams(server: GatewayServer, key: str, up: Upstream) -> None:
    async def run() -> tuple[Any, str]:
        client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
        plain = await client.chat.completions.create(model="via-openai", max_completion_tokens=40, seed=3,
                                                     messages=[{"role": "user", "content": "Hello there"}])
        stream = await client.chat.completions.create(model="via-openai", stream=True,
                                                      messages=[{"role": "user", "content": "stream this please"}])
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await client.close()
        return plain, text

    plain, text = asyncio.run(run())
    assert plain.choices[0].message.content == "Echo: Hello there" and text == "Echo: stream this please"
    assert (up.requests[0].body["max_completion_tokens"], up.requests[0].body["seed"]) == (40, 3)


def test_parse_returns_the_structured_object(server: GatewayServer, key: str, up: Upstream) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    done = client.chat.completions.parse(model="via-openai", response_format=Answer,
                                         messages=[{"role": "user", "content": "Reply in JSON please"}])
    parsed = done.choices[0].message.parsed
    assert isinstance(parsed, Answer) and parsed.answer == "Echo: Reply in JSON please" and parsed.confidence == 5
    sent = up.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Answer"
    assert sent["json_schema"]["strict"] is True and set(sent["json_schema"]["schema"]["properties"]) == {
        "answer", "confidence"}


def test_the_stream_helper_gives_events_and_the_final_completion(server: GatewayServer, key: str) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    with client.chat.completions.stream(model="via-openai", response_format=Answer,
                                        messages=[{"role": "user", "content": "Reply in JSON please"}]) as stream:
        kinds = {event.type for event in stream}
        final = stream.get_final_completion()
    assert {"content.delta", "content.done", "chunk"} <= kinds
    assert final.choices[0].message.parsed == Answer(answer="Echo: Reply in JSON please", confidence=5)


def test_an_upstreams_annotations_reach_the_client_as_it_sent_them(server: GatewayServer, key: str, up: Upstream,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cited = {"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 4, "title": "Key rotation",
                                                      "url": "https://example.com/keys"}}
    monkeypatch.setattr(up, "annotations", [cited])  # as OpenAI's search models send them
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    done = client.chat.completions.create(model="via-openai", messages=[{"role": "user", "content": "Hello there"}])
    message = done.choices[0].message
    assert [a.model_dump() for a in message.annotations or ()] == [cited] and message.refusal is None
    assert done.system_fingerprint == "fp_loopback" and done.service_tier == "default"


# --- litellm and langchain-openai, as clients ----------------------------------------------------------
def _run_client(name: str, server: GatewayServer, key: str, settings: Settings) -> dict[str, Any]:
    if not COMPAT_PYTHON.exists():
        pytest.fail(f"{COMPAT_PYTHON} is missing: `make compat` builds it (make test does)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PYTHONPATH"))}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # litellm would fetch its price map from the internet
    done = subprocess.run([str(COMPAT_PYTHON), str(ROOT / "tests" / "support" / "compat_clients.py"), name,
                           server.url, key, "via-openai", settings.embedding_model],
                          capture_output=True, text=True, timeout=180, env=env, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("client", ["litellm", "langchain"])
def test_third_party_clients_work_unchanged(client: str, server: GatewayServer, key: str, settings: Settings,
                                           up: Upstream) -> None:
    got = _run_client(client, server, key, settings)
    assert got["plain"]["text"] == "Echo: How are API keys rotated?" and got["plain"]["usage"] > 0
    assert got["stream"]["text"] == "Echo: stream this please"
    assert got["tools"]["name"] == "get_weather" and got["tools"]["arguments"] == {"city": "get_weather for Oslo"}
    assert "NotFoundError" in got["not_found"]["classes"] and got["not_found"]["status"] == 404
    assert got["embedding"] == {"count": 2, "dimensions": 384}
    first = up.requests[0].body  # the plain question, as the client sent it and the gateway forwarded it
    assert (first["temperature"], first["stop"]) == (0.2, ["\n\n"])
    assert first.get("max_completion_tokens") == 50
    if client == "litellm":
        assert first["seed"] == 7  # (litellm itself leaves `user` out for this model)
    else:
        assert got["structured"] == {"answer": "Echo: Reply in JSON please", "confidence": 5}
