"""Loopback servers that speak each provider's real wire protocol (OpenAI Chat Completions, Anthropic
Messages, Bedrock Converse, Bedrock Rerank; for embeddings Bedrock InvokeModel and OpenAI's
/v1/embeddings), streaming included, with injectable faults. Tests drive the real SDKs
against them; benchmarks use them as a fake upstream with a fixed latency."""

from __future__ import annotations

from tests.support.upstreams._base import Fault, RecordedRequest, Reply, Upstream
from tests.support.upstreams.anthropic_messages import AnthropicUpstream
from tests.support.upstreams.bedrock_converse import BedrockUpstream
from tests.support.upstreams.bedrock_embed import BedrockEmbedUpstream
from tests.support.upstreams.bedrock_rerank import BedrockRerankUpstream
from tests.support.upstreams.openai_chat import OpenAIUpstream
from tests.support.upstreams.openai_embeddings import OpenAIEmbeddingsUpstream

__all__ = ["AnthropicUpstream", "BedrockEmbedUpstream", "BedrockRerankUpstream", "BedrockUpstream", "Fault",
           "OpenAIEmbeddingsUpstream", "OpenAIUpstream", "RecordedRequest", "Reply", "Upstream"]
