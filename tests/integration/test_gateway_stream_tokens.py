"""A streamed answer with the default output rails on reaches the client word by word, not sentence by
sentence: the official `openai` SDK's `.stream()`, `client.responses.stream()` and the `anthropic` SDK's
`messages.stream()` against the gateway, whose loopback upstream streams one word every GAP_S. The first
content arrives while the upstream is still streaming its first sentence."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from stratus.config import Settings
from stratus_tools.local.server import GatewayServer
from tests.integration.gateway_support import guarded_loop_settings, tenant_with_key
from tests.support.upstreams import OpenAIUpstream

# Wide enough that a machine busy with the rest of the suite (the other worker, the contract tier's processes)
# cannot make the rails' work on one chunk outlast the whole upstream stream (at 0.12 s, 1 s for the answer,
# a CI run saw the first delta arrive after the upstream had finished); the tests are about order, not speed.
GAP_S = 0.3
QUESTION = "how do refunds work for annual plans"
ANSWER = f"Echo: {QUESTION}"  # one sentence, 7 words after "Echo:" (8 upstream content chunks)
UPSTREAM_CHUNKS = len(ANSWER.split())


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    with OpenAIUpstream(chunk_interval_s=GAP_S) as up:
        yield up


@pytest.fixture(scope="module")
def settings(pg_url: str, upstream: OpenAIUpstream, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return guarded_loop_settings(pg_url, upstream, tmp_path_factory)


@pytest.fixture(scope="module")
def key(pg_url: str) -> str:
    return tenant_with_key(pg_url, "tok")[1]  # no stored policy: the default rails


class Deltas:
    """Content deltas as they arrive, each with how many upstream streams had ended at that moment."""

    def __init__(self, up: OpenAIUpstream) -> None:
        self.up = up
        self.before = up.streams_completed
        self.texts: list[str] = []
        self.upstream_done: list[bool] = []

    def add(self, text: str) -> None:
        if not text:
            return  # the chunk that opens the turn carries content ""
        self.texts.append(text)
        self.upstream_done.append(self.up.streams_completed > self.before)

    def check(self) -> None:
        assert "".join(self.texts) == ANSWER
        # Word by word (the last word of the answer waits for the end of the stream)...
        assert len(self.texts) >= UPSTREAM_CHUNKS - 1
        # ... and most of the sentence was with the client before the upstream had finished it.
        assert not self.upstream_done[0] and self.upstream_done.count(False) >= UPSTREAM_CHUNKS - 2
        assert self.texts[0] == "Echo:"  # a chunk ending in punctuation no PII value contains goes out at once


def test_the_openai_sdk_stream_gets_content_before_the_sentence_ends(server: GatewayServer, key: str,
                                                                     up: OpenAIUpstream) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    deltas = Deltas(up)
    guard = None
    with client.chat.completions.stream(model="fast", messages=[{"role": "user", "content": QUESTION}]) as stream:
        for event in stream:
            if event.type == "content.delta":
                deltas.add(event.delta)
            elif event.type == "chunk" and "stratus" in (event.chunk.model_extra or {}):
                guard = event.chunk.model_extra["stratus"]["guard"]  # type: ignore[index]
    deltas.check()
    assert guard is not None and guard["blocked"] is None
    assert {v["rail"] for v in guard["verdicts"] if v["stage"] == "output"} >= {"canary", "pii", "toxicity"}


def test_the_responses_stream_gets_content_before_the_sentence_ends(server: GatewayServer, key: str,
                                                                    up: OpenAIUpstream) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    deltas = Deltas(up)
    with client.responses.stream(model="fast", input=QUESTION) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.add(event.delta)
    deltas.check()


def test_the_anthropic_sdk_stream_gets_content_before_the_sentence_ends(server: GatewayServer, key: str,
                                                                        up: OpenAIUpstream) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0)
    deltas = Deltas(up)
    with client.messages.stream(model="fast", max_tokens=64,
                                messages=[{"role": "user", "content": QUESTION}]) as stream:
        for text in stream.text_stream:
            deltas.add(text)
    deltas.check()
