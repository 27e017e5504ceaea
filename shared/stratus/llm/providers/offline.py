"""The offline provider: answers from the retrieved passages with no network, no key and no model weights
beyond the embedder ingestion already ships. The default in local mode and CI.

It is not a language model and never says it is: an answer is the context sentences most relevant to the
question (llm/extractive.py), each ending with its passage's [n] marker, or a plain statement that the
documents do not answer the question. Completions report provider "offline" and the deployment's model
id ("stratus-offline-extractive"). Token counts come from the embedder's tokenizer; tools are ignored
(it never calls one); the same request always gets the same answer.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator

from stratus.embeddings import Embedder, get_embedder
from stratus.llm import extractive
from stratus.llm.catalog import Deployment
from stratus.llm.errors import InvalidRequest, ProviderError, ProviderTimeout
from stratus.llm.types import ChatRequest, Completion, FinishReason, StreamChunk, Usage

# The relevance threshold was calibrated with this model's scores; it is fixed here rather than read from
# settings.embedding_model so that changing the retrieval model cannot silently shift it.
EMBEDDING_MODEL = "all-MiniLM-L6-v2-int8"
_WORDS_PER_CHUNK = 6
_LABEL = re.compile(r"^[A-Z][A-Za-z ]{0,20}:\s*")  # "Question: ", "Passages:"
NO_ANSWER = "The provided documents do not answer this question."
NO_CONTEXT = (
    "This is the offline extractive provider, not a language model: it answers only by quoting retrieved "
    "documents, and this request came without any. Ask about your documents, or configure a hosted model."
)


class OfflineProvider:
    name = "offline"

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(EMBEDDING_MODEL)
        return self._embedder

    def complete(self, request: ChatRequest, deployment: Deployment, *, timeout: float) -> Completion:
        parts, finish, usage = self._answer(request, deployment, timeout)
        return Completion(text="".join(parts), finish_reason=finish, usage=usage, provider=self.name,
                          model=deployment.model, response_id=_response_id(request, deployment))

    def stream(self, request: ChatRequest, deployment: Deployment, *, timeout: float) -> Iterator[StreamChunk]:
        """A few words per chunk (the answer is ready at once; the shape matches a streaming model's, so
        clients and the gateway's SSE path see real deltas), then a final chunk with finish_reason and usage."""
        parts, finish, usage = self._answer(request, deployment, timeout)
        words = re.findall(r"\s*\S+", "".join(parts))
        for i in range(0, len(words), _WORDS_PER_CHUNK):
            yield StreamChunk(text="".join(words[i:i + _WORDS_PER_CHUNK]), model=deployment.model if i == 0 else None)
        yield StreamChunk(finish_reason=finish, usage=usage, model=None if words else deployment.model)

    # ---- the answer -------------------------------------------------------------------------------

    def _answer(self, request: ChatRequest, deployment: Deployment,
                timeout: float) -> tuple[list[str], FinishReason, Usage]:
        """The answer as stream-sized parts (their concatenation is the text), its finish reason and usage."""
        started = time.monotonic()
        question = _question(request)
        try:
            if request.context is None:
                sentences = [NO_CONTEXT]
            else:
                passages = [(p.number, p.text) for p in request.context]
                chosen = extractive.select(extractive.extract(question, passages, self.embedder))
                sentences = [extractive.cite(s.sentence.text, s.sentence.number) for s in chosen] or [NO_ANSWER]
            parts, finish = self._fit(sentences, request, deployment)
            usage = Usage(input_tokens=self.embedder.count_tokens(_rendered(request)),
                          output_tokens=self.embedder.count_tokens("".join(parts)))
        except (OSError, RuntimeError) as err:  # model files missing or unreadable, runtime failure
            raise ProviderError(f"offline provider unavailable: {err}", deployment=deployment.name) from err
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise ProviderTimeout(f"offline answer took {elapsed:.2f}s, over the {timeout:.2f}s attempt deadline",
                                  deployment=deployment.name)
        return parts, finish, usage

    def _fit(self, sentences: list[str], request: ChatRequest,
             deployment: Deployment) -> tuple[list[str], FinishReason]:
        """Whole sentences while they fit max_tokens (the request's, capped by the deployment's); a first
        sentence that alone is too long is cut at a token boundary. A stop sequence ends the answer."""
        budget = min(request.max_tokens or deployment.max_output_tokens, deployment.max_output_tokens)
        parts: list[str] = []
        finish: FinishReason = "stop"
        for sentence in sentences:
            candidate = ("" if not parts else " ") + sentence
            if self.embedder.count_tokens("".join(parts) + candidate) <= budget:
                parts.append(candidate)
                continue
            finish = "length"
            if not parts:
                offsets = self.embedder.token_offsets(sentence)
                parts.append(sentence[: offsets[budget - 1][1]] if len(offsets) >= budget else sentence)
            break
        return _apply_stop(parts, request.stop, finish)


def _question(request: ChatRequest) -> str:
    """The last user message's text. A prompt template may render the passages into it (prompts/rag-answer
    does: a "[n] title" line and the text per passage, then "Question: ..."); the passages, their marker
    lines and "Label:" prefixes are removed so that the question, not the context, is what gets matched."""
    users = [m for m in request.messages if m.role == "user"]
    if not users or not users[-1].text().strip():
        raise InvalidRequest("the offline provider needs a user message with text", field="messages")
    text = users[-1].text()
    if not request.context:
        return text.strip()
    # Longest first: a passage can hold another (overlapping chunks, a section and its first paragraph);
    # removing the shorter one first would leave the rest of the longer one in the "question".
    for passage in sorted(request.context, key=lambda p: len(p.text), reverse=True):
        text = text.replace(passage.text, "\n")
    markers = {f"[{p.number}]" for p in request.context}
    lines = [_LABEL.sub("", line).strip() for line in text.split("\n")
             if line.strip()[: line.strip().find("]") + 1] not in markers]
    return " ".join(line for line in lines if line) or users[-1].text().strip()


def _rendered(request: ChatRequest) -> str:
    return "\n".join(f"{m.role}: {m.text()}" for m in request.messages)


def _apply_stop(parts: list[str], stop: list[str] | None, finish: FinishReason) -> tuple[list[str], FinishReason]:
    """Cut the answer before the first stop sequence, as hosted models do (finish_reason "stop")."""
    text = "".join(parts)
    cuts = [text.find(s) for s in stop or [] if s and s in text]
    if not cuts:
        return parts, finish
    end, kept, pos = min(cuts), [], 0
    for part in parts:
        if pos >= end:
            break
        kept.append(part[: end - pos])
        pos += len(part)
    return [p for p in kept if p], "stop"


def _response_id(request: ChatRequest, deployment: Deployment) -> str:
    """Deterministic: the same request to the same deployment gets the same id (and the same answer)."""
    payload = json.dumps([deployment.name, deployment.model, request.model_dump(mode="json")], sort_keys=True)
    return "offline-" + hashlib.sha256(payload.encode()).hexdigest()[:24]
