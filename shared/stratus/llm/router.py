"""Routing a request for a model alias across its ordered deployments.

For each deployment in order: skip it while its circuit is open or when it has no credentials; call it
with a per-attempt timeout bounded by the request's overall deadline; on a retryable failure retry the
same deployment with exponential backoff and full jitter (a `retry-after` from the provider wins when it
is short enough to wait for), then fall back to the next deployment. Timeouts fall back at once: waiting
again on a deployment that just used its whole timeout would spend the deadline on it. A failure no
deployment can fix (a malformed request) stops the request. Every attempt is recorded for the trace (and,
with tracing on, is a `provider_attempt` span annotated with its provider, deployment and
outcome); only the successful one is billed.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from stratus.breaker import CircuitBreaker
from stratus.llm import errors
from stratus.llm.catalog import Catalog, Deployment
from stratus.llm.pricing import cost_usd
from stratus.llm.providers.base import Provider, get_provider
from stratus.llm.types import ChatRequest, Completion, StreamChunk, Usage
from stratus.spans import Span, span

log = logging.getLogger(__name__)

_NEEDS_KEY = {"openai", "anthropic"}
# The log event an operator's alarm counts (template.yaml: ProviderAuthFailures metric filters).
AUTH_FAILED_EVENT = "provider_auth_failed"


@dataclass
class Attempt:
    """One try of one deployment, as the trace shows it."""

    deployment: str
    provider: str
    model: str
    outcome: str  # "ok", an llm.errors code, "circuit_open" or "not_configured"
    started_ms: float = 0.0  # since the request started
    duration_ms: float = 0.0
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    waited_ms: float = 0.0  # backoff slept before this attempt

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Routed:
    completion: Completion
    deployment: Deployment
    attempts: list[Attempt]
    cost_usd: float


@dataclass
class RoutedStream:
    """Iterate for the chunks; once exhausted, `deployment`, `usage` and `cost_usd` describe the answer."""

    _chunks: Iterator[StreamChunk]
    attempts: list[Attempt] = field(default_factory=list)
    deployment: Deployment | None = None
    usage: Usage | None = None
    model: str | None = None
    cost_usd: float = 0.0

    def __iter__(self) -> Iterator[StreamChunk]:
        return self._chunks

    def close(self) -> None:
        """Stops the provider's stream now (the caller left). The chunk generator and this object refer to
        each other, so without this the connection would stay open until the cycle collector runs."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 2  # retries of one deployment after its first try
    base_backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    deadline_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Any) -> RetryPolicy:
        return cls(attempts=settings.retry_attempts, base_backoff_s=settings.retry_base_backoff_s,
                   max_backoff_s=settings.retry_max_backoff_s, deadline_s=settings.generation_deadline_s)


_default_breaker: CircuitBreaker | None = None


def default_breaker(settings: Any) -> CircuitBreaker:
    """The process-wide breaker (shared by every request a warm container serves)."""
    global _default_breaker
    if _default_breaker is None:
        _default_breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
    return _default_breaker


def request_attributes(attempt: Span, request: ChatRequest, attempt_no: int) -> None:
    """The GenAI semantic conventions' request attributes on a provider attempt's span (OpenTelemetry only)."""
    if attempt.recording:
        attempt.set_attributes({"gen_ai.operation.name": "chat", "gen_ai.request.max_tokens": request.max_tokens,
                                "gen_ai.request.temperature": request.temperature,
                                "gen_ai.request.top_p": request.top_p, "gen_ai.request.seed": request.seed,
                                "stratus.attempt": attempt_no})


def response_attributes(attempt: Span, completion: Completion, deployment: Deployment) -> None:
    """... and the response's: model, id, finish reason, token usage, cost."""
    if attempt.recording:
        usage = completion.usage
        attempt.set_attributes({"gen_ai.response.model": completion.model, "gen_ai.response.id": completion.response_id,
                                "gen_ai.response.finish_reasons": (completion.finish_reason,),
                                "gen_ai.usage.input_tokens": usage.input_tokens,
                                "gen_ai.usage.output_tokens": usage.output_tokens,
                                "stratus.cost_usd": cost_usd(deployment.price, usage)})


class Router:
    def __init__(self, catalog: Catalog, *, policy: RetryPolicy | None = None, breaker: CircuitBreaker | None = None,
                 providers: Callable[[str], Provider] = get_provider, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, jitter: Callable[[], float] = random.random) -> None:
        self.catalog = catalog
        self.policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(5, 30.0, clock)
        self.providers = providers
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter

    # --- one answer --------------------------------------------------------------------------------
    def complete(self, alias: str, request: ChatRequest, *, override: list[str] | None = None,
                 deployments: list[Deployment] | None = None, deadline_s: float | None = None) -> Routed:
        """`deployments`, when the caller has resolved the alias already, are tried as given."""
        run = _Run(self, alias, request, deployments or self.catalog.deployments_for(alias, override), deadline_s)
        for deployment in run.candidates():
            provider = self.providers(deployment.provider)
            while True:
                timeout = run.begin(deployment)
                with span("provider_attempt", provider=deployment.provider, deployment=deployment.name,
                          model=deployment.model) as attempt:
                    request_attributes(attempt, request, len(run.attempts) + 1)
                    failure: errors.ProviderError | None = None
                    try:
                        completion = provider.complete(request, deployment, timeout=timeout)
                        attempt.annotate(outcome="ok")
                        response_attributes(attempt, completion, deployment)
                    except errors.ProviderError as err:
                        failure = err
                        attempt.annotate(outcome=err.code, status=err.status)
                if failure is not None:
                    if run.failed(deployment, failure):
                        continue  # retry this deployment
                    break  # next deployment
                run.succeeded(deployment)
                return Routed(completion, deployment, run.attempts, cost_usd(deployment.price, completion.usage))
        raise run.exhausted()

    # --- a streamed answer -------------------------------------------------------------------------
    def stream(self, alias: str, request: ChatRequest, *, override: list[str] | None = None,
               deployments: list[Deployment] | None = None, deadline_s: float | None = None) -> RoutedStream:
        """Falls back only until the first chunk reaches the caller; a break after that raises
        StreamInterrupted (the caller has shown text that cannot be taken back)."""
        run = _Run(self, alias, request, deployments or self.catalog.deployments_for(alias, override), deadline_s)
        result = RoutedStream(iter(()), run.attempts)
        result._chunks = self._stream(run, request, result)
        return result

    def _stream(self, run: _Run, request: ChatRequest, result: RoutedStream) -> Iterator[StreamChunk]:
        for deployment in run.candidates():
            provider = self.providers(deployment.provider)
            while True:
                timeout = run.begin(deployment)
                emitted = False
                try:
                    for chunk in provider.stream(request, deployment, timeout=timeout):
                        if chunk.finish_reason is not None:
                            result.usage = chunk.usage or Usage()
                            result.model = chunk.model or deployment.model
                        if chunk.text or chunk.tool_calls or chunk.finish_reason:
                            emitted = True
                        yield chunk
                    if result.usage is None:  # an adapter must end with a final chunk; never pass a cut as done
                        raise errors.StreamInterrupted("the stream ended without a final event",
                                                       deployment=deployment.name)
                except errors.ProviderError as err:
                    if emitted:
                        run.failed(deployment, err, may_retry=False)
                        raise errors.StreamInterrupted(
                            f"{deployment.name}: the stream broke after the answer had started ({err.message})",
                            status=err.status, deployment=deployment.name) from err
                    if run.failed(deployment, err):
                        continue
                    break
                run.succeeded(deployment)
                result.deployment = deployment
                result.cost_usd = cost_usd(deployment.price, result.usage)
                return
        raise run.exhausted()


class _Run:
    """The bookkeeping of one routed request: deadline, attempts, backoff decisions."""

    def __init__(self, router: Router, alias: str, request: ChatRequest, deployments: list[Deployment],
                 deadline_s: float | None) -> None:
        self.router = router
        self.alias = alias
        self.deployments = deployments
        self.start = router.clock()
        self.deadline = self.start + (deadline_s if deadline_s is not None else router.policy.deadline_s)
        self.attempts: list[Attempt] = []
        self.last: errors.ProviderError | None = None
        self._tries = 0
        self._wait_ms = 0.0
        self._began = 0.0

    def _ms(self, t: float) -> float:
        return round((t - self.start) * 1000, 3)

    def candidates(self) -> Iterator[Deployment]:
        for deployment in self.deployments:
            if deployment.provider in _NEEDS_KEY and deployment.api_key is None:
                self._skip(deployment, "not_configured", "no API key is configured for this provider")
                continue
            if not self.router.breaker.allow(deployment.name):
                self._skip(deployment, errors.CircuitOpen.code, "skipped: the deployment failed repeatedly",
                           retry_after=self.router.breaker.retry_after(deployment.name))
                continue
            self._tries = 0
            self._wait_ms = 0.0
            yield deployment

    def _skip(self, deployment: Deployment, outcome: str, why: str, retry_after: float | None = None) -> None:
        self.attempts.append(Attempt(deployment.name, deployment.provider, deployment.model, outcome,
                                     started_ms=self._ms(self.router.clock()), error=why, retry_after_s=retry_after))

    def begin(self, deployment: Deployment) -> float:
        """The timeout for the next attempt; DeadlineExceeded when no time is left."""
        now = self.router.clock()
        remaining = self.deadline - now
        if remaining <= 0:
            err = errors.DeadlineExceeded(
                f"the request's deadline passed after {len(self.attempts)} attempt(s)", deployment=deployment.name)
            err.attempts = self.attempts
            raise err
        self._began = now
        return min(deployment.timeout_s, remaining)

    def succeeded(self, deployment: Deployment) -> None:
        now = self.router.clock()
        self.attempts.append(Attempt(deployment.name, deployment.provider, deployment.model, "ok",
                                     started_ms=self._ms(self._began), duration_ms=round((now - self._began) * 1000, 3),
                                     waited_ms=self._wait_ms))
        self.router.breaker.success(deployment.name)

    def failed(self, deployment: Deployment, err: errors.ProviderError, *, may_retry: bool = True) -> bool:
        """Record a failed attempt; True to retry the same deployment (after sleeping), False to move on.
        Raises when no deployment could succeed."""
        now = self.router.clock()
        err.deployment = err.deployment or deployment.name
        self.attempts.append(Attempt(
            deployment.name, deployment.provider, deployment.model, err.code, started_ms=self._ms(self._began),
            duration_ms=round((now - self._began) * 1000, 3), status=err.status, error=err.message[:500],
            retry_after_s=err.retry_after, waited_ms=self._wait_ms))
        self.last = err
        if isinstance(err, errors.AuthenticationFailed):
            log.error("%s: the provider refused deployment %s's credentials (%s, status %s)", AUTH_FAILED_EVENT,
                      deployment.name, deployment.provider, err.status)
        if err.trips:
            self.router.breaker.failure(deployment.name)  # the deployment's health, not the request's fault
        if not err.fallback:
            err.attempts = self.attempts
            raise err
        self._tries += 1
        if not (may_retry and err.retryable) or isinstance(err, errors.ProviderTimeout):
            return False
        if self._tries > self.router.policy.attempts:
            return False
        delay = self._delay(err)
        if delay is None or now + delay >= self.deadline:
            return False
        if delay > 0:
            self.router.sleep(delay)
        self._wait_ms = round(delay * 1000, 3)
        return True

    def _delay(self, err: errors.ProviderError) -> float | None:
        policy = self.router.policy
        if err.retry_after is not None:
            # A provider's explicit wait is honoured when it is short; a long one means "go elsewhere".
            return err.retry_after if err.retry_after <= policy.max_backoff_s else None
        backoff: float = policy.base_backoff_s * (2 ** (self._tries - 1))  # int ** int is typed Any
        ceiling = min(policy.max_backoff_s, backoff)
        return ceiling * self.router.jitter()  # full jitter: spreads retries from concurrent callers

    def exhausted(self) -> errors.AllDeploymentsFailed:
        tried = ", ".join(f"{a.deployment}: {a.outcome}" for a in self.attempts) or "none"
        last = self.last
        skipped = [a.retry_after_s for a in self.attempts if a.outcome == errors.CircuitOpen.code]
        if last is None and skipped:  # nothing was tried: every deployment's circuit is open
            waits = [w for w in skipped if w is not None]
            last = errors.CircuitOpen("every deployment of this model is failing; retry shortly",
                                      retry_after=min(waits) if waits else None)
        return errors.AllDeploymentsFailed(f"no deployment of {self.alias!r} answered ({tried})",
                                           attempts=self.attempts, last=last)
