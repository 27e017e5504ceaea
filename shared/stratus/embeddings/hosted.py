"""What every hosted embedding adapter shares: batching within the API's limits, retries with backoff,
pacing, per-text failures, and the local tokenizer used for chunking.

- Batches: at most the API's texts per call and, where the API limits a call's tokens (OpenAI), at most
  `TOKENS_PER_CALL_SHARE` of that limit counted with the local tokenizer (which is not the provider's:
  the margin absorbs the difference). Batches run `concurrency` at a time.
- Retries: a retryable failure (429, 5xx, timeout, dropped connection, a broken body) is retried
  `retries` times with exponential backoff and full jitter; a provider's retry-after wins when it is
  no longer than `max_backoff_s`. Exhausted, a 429 stays a RateLimited (the caller answers 429 with
  the retry-after) and any other failure becomes Overloaded (a 503 with retry-after).
- Pacing: at most `requests_per_second` calls per model and process, so a bulk ingest does not run into
  the account's quota only to be throttled.
- Per-text failures: a text the API refuses (too long, empty) fails alone. Texts over a documented
  character limit are refused before any call; a call refused as invalid (400) is split in halves until
  the culprits are found, so one bad text costs a few extra calls, never the batch.
- Tokens for chunking are counted with the offline MiniLM tokenizer (no provider tokenizer ships
  offline); `max_tokens` is the provider's per-text limit. Ingestion's chunk budget (at most 254 of
  those tokens) sits far below every hosted model's limit, so the tokenizers' difference cannot matter
  there.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from stratus import provider_errors as e
from stratus.breaker import CircuitBreaker
from stratus.embeddings import Embedded, Embedder, EmbedKind
from stratus.embeddings.models import Call, EmbedInput, HostedModel, parse_model_id

TOKENS_PER_CALL_SHARE = 0.75


class Pacer:
    """Spaces calls at least 1/rate seconds apart (None: no limit); threads wait their turn."""

    def __init__(self, rate: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (cosine distance is what the index measures; Cohere's are not unit)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: np.ndarray = (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
    return out


class HostedEmbedder:
    """One hosted model at one dimension. `call(texts, kind)` is the adapter's single API call: the
    vectors and the tokens the provider billed (None when it does not say)."""

    def __init__(self, model_name: str, call: Call, *, retries: int = 2, base_backoff_s: float = 0.25,
                 max_backoff_s: float = 8.0, concurrency: int = 4, pacer: Pacer | None = None,
                 breaker: CircuitBreaker | None = None, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        spec, dims = parse_model_id(model_name)
        self.spec: HostedModel = spec
        self.model_name = f"{spec.model}/{dims}"
        self.dimensions = dims
        self.max_tokens = spec.max_input_tokens
        self.provider = spec.provider
        self._call = call
        self.retries, self.base_backoff_s, self.max_backoff_s = retries, base_backoff_s, max_backoff_s
        self.concurrency = max(1, concurrency)
        self.pacer = pacer or Pacer(None)
        # As for chat deployments (stratus.breaker): after repeated provider-side failures the model is
        # skipped for a cooldown (503 circuit_open) instead of every caller waiting out its retries.
        self.breaker = breaker or CircuitBreaker(5, 30.0)
        self._sleep, self._jitter = sleep, jitter

    # The chunker's and the gateway's token counts: the local tokenizer (see the module docstring).
    def count_tokens(self, text: str) -> int:
        return self._tokenizer().count_tokens(text)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self._tokenizer().token_offsets(text)

    def _size(self, item: EmbedInput) -> int:
        return len(item) if isinstance(item, list) else self.count_tokens(item)

    def _tokenizer(self) -> Embedder:
        from stratus.embeddings import get_embedder

        return get_embedder("all-MiniLM-L6-v2-int8")

    def embed(self, texts: list[str], *, kind: EmbedKind = "document") -> np.ndarray:
        """All vectors, or InvalidRequest naming the first text that failed (embed_all reports each)."""
        result = self.embed_all(texts, kind=kind)
        if result.failures:
            i, err = min(result.failures.items())
            raise e.InvalidRequest(f"input.{i}: {err.message} ({len(result.failures)} of {len(texts)} texts "
                                   f"failed)", status=err.status, deployment=self.model_name, field="input")
        return result.vectors

    def embed_all(self, texts: Sequence[EmbedInput], *, kind: EmbedKind = "document") -> Embedded:
        """Every input's vector (token ids too, where the model takes them), the tokens billed, and the
        inputs that failed."""
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        failures: dict[int, e.ProviderError] = {}
        ok: list[int] = []
        for i, text in enumerate(texts):
            reason = self._refuse(text)
            if reason:
                failures[i] = e.InvalidRequest(f"{self.model_name}: {reason}", deployment=self.model_name,
                                               field="input")
            else:
                ok.append(i)
        batches = self._batches(texts, ok)
        if len(batches) > 1 and self.concurrency > 1:
            with ThreadPoolExecutor(min(self.concurrency, len(batches))) as pool:
                results = list(pool.map(lambda b: self._embed_batch(texts, b, kind), batches))
        else:
            results = [self._embed_batch(texts, b, kind) for b in batches]
        tokens = 0
        for done, billed, failed in results:
            for i, vector in done.items():
                vectors[i] = vector
            tokens += billed
            failures.update(failed)
        return Embedded(vectors, tokens, failures)

    def _refuse(self, text: EmbedInput) -> str | None:
        if isinstance(text, list):
            if not self.spec.takes_token_ids:
                return "token ids: this model takes text (token arrays are OpenAI's models' tokenizer ids)"
            if not text:
                return "an empty token array cannot be embedded"
            return (f"{len(text)} tokens; this model reads at most {self.max_tokens}"
                    if len(text) > self.max_tokens else None)
        if not text.strip():
            return "an empty text cannot be embedded"
        if self.spec.max_input_chars is not None and len(text) > self.spec.max_input_chars:
            return f"{len(text)} characters; this model reads at most {self.spec.max_input_chars}"
        return None

    def _batches(self, texts: Sequence[EmbedInput], indices: list[int]) -> list[list[int]]:
        limit = self.spec.max_tokens_per_call
        budget = int(limit * TOKENS_PER_CALL_SHARE) if limit else None
        batches: list[list[int]] = []
        current: list[int] = []
        used = 0
        for i in indices:
            n = self._size(texts[i]) if budget else 0
            if current and (len(current) >= self.spec.max_texts_per_call or (budget and used + n > budget)):
                batches.append(current)
                current, used = [], 0
            current.append(i)
            used += n
        if current:
            batches.append(current)
        return batches

    def _embed_batch(self, texts: Sequence[EmbedInput], batch: Sequence[int], kind: EmbedKind
                     ) -> tuple[dict[int, np.ndarray], int, dict[int, e.ProviderError]]:
        """One batch: its vectors by index, the tokens billed, and the texts refused. A refused call is
        split in halves until each refusal is pinned on a text."""
        part = [texts[i] for i in batch]
        try:
            vectors, billed = self._with_retries(part, kind)
        except (e.InvalidRequest, e.ContextLengthExceeded) as err:
            if len(batch) == 1:
                return {}, 0, {batch[0]: err}
            mid = len(batch) // 2
            a, b = self._embed_batch(texts, batch[:mid], kind), self._embed_batch(texts, batch[mid:], kind)
            return a[0] | b[0], a[1] + b[1], a[2] | b[2]
        if billed is None:
            billed = sum(self._size(t) for t in part)
        return dict(zip(batch, unit_rows(vectors), strict=True)), billed, {}

    def _with_retries(self, texts: list[EmbedInput], kind: EmbedKind) -> tuple[np.ndarray, int | None]:
        attempt = 0
        while True:
            if not self.breaker.allow(self.model_name):
                raise e.CircuitOpen(f"{self.model_name}: skipped, its circuit is open after repeated provider "
                                    "failures", status=503, deployment=self.model_name,
                                    retry_after=self.breaker.retry_after(self.model_name) or 1.0)
            self.pacer.wait()
            try:
                vectors, billed = self._call(texts, kind)
                if vectors.shape != (len(texts), self.dimensions):  # a broken answer: retried like one
                    raise e.MalformedResponse(f"{self.model_name}: {vectors.shape[0]} vectors of "
                                              f"{vectors.shape[-1]} dimensions for {len(texts)} texts",
                                              deployment=self.model_name, status=200)
                self.breaker.success(self.model_name)
                return vectors, billed
            except e.ProviderError as err:
                if err.trips:  # the model's own health; a refused text or a rate limit says nothing of it
                    self.breaker.failure(self.model_name)
                if not err.retryable:
                    raise
                if attempt >= self.retries:
                    raise self._exhausted(err, attempt + 1) from err
                self._sleep(self._backoff(attempt, err.retry_after))
                attempt += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after <= self.max_backoff_s:
            return retry_after
        return self._jitter() * min(self.max_backoff_s, self.base_backoff_s * 2.0 ** attempt)

    def _exhausted(self, err: e.ProviderError, attempts: int) -> e.ProviderError:
        if isinstance(err, e.RateLimited):
            return err
        return e.Overloaded(f"{self.model_name}: unavailable after {attempts} attempts: {err.message}",
                            status=err.status, retry_after=err.retry_after or 1.0, deployment=self.model_name)
