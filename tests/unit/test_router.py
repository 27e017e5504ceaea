"""Routing decisions: retries, backoff, retry-after, fallback, circuit breaking, deadlines, billing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from stratus.breaker import CircuitBreaker
from stratus.llm import errors
from stratus.llm.catalog import parse_catalog
from stratus.llm.router import RetryPolicy, Router
from stratus.llm.types import ChatRequest, Completion, Message, StreamChunk, Usage

CATALOG = {
    "default_alias": "fast",
    "deployments": {
        "primary": {"provider": "openai", "model": "gpt-a", "price": {"input": 1.0, "output": 2.0}, "timeout_s": 5},
        "secondary": {"provider": "anthropic", "model": "claude-b", "price": {"input": 3.0, "output": 4.0,
                                                                              "cached_input": 0.3}},
        "tertiary": {"provider": "bedrock", "model": "nova", "price": {"input": 0.1, "output": 0.2}},
    },
    "aliases": {"fast": ["primary", "secondary", "tertiary"], "solo": ["primary"]},
}
KEYS = {"openai": SecretStr("k1"), "anthropic": SecretStr("k2")}
REQUEST = ChatRequest(messages=[Message(role="user", content="hello")])


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class ScriptedProvider:
    """Plays a script of outcomes per deployment: an exception to raise or a usage to answer with."""

    def __init__(self, clock: FakeClock, script: dict[str, list[object]]) -> None:
        self.clock = clock
        self.script = script
        self.calls: list[tuple[str, float]] = []
        self.name = "scripted"

    def _next(self, deployment_name: str, timeout: float) -> object:
        self.calls.append((deployment_name, timeout))
        outcome = self.script[deployment_name].pop(0)
        if outcome == "timeout":  # the whole timeout passes
            self.clock.now += timeout
            raise errors.ProviderTimeout("timed out")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def complete(self, request: ChatRequest, deployment, *, timeout: float) -> Completion:
        usage = self._next(deployment.name, timeout)
        assert isinstance(usage, Usage)
        return Completion(text=f"from {deployment.name}", usage=usage, provider=deployment.provider,
                          model=deployment.model)

    def stream(self, request: ChatRequest, deployment, *, timeout: float) -> Iterator[StreamChunk]:
        outcome = self._next(deployment.name, timeout)
        if isinstance(outcome, list):  # chunks, possibly ending in an exception
            for item in outcome:
                if isinstance(item, Exception):
                    raise item
                yield item
            return
        yield StreamChunk(text="hi ")
        yield StreamChunk(finish_reason="stop", usage=outcome)


def make_router(script: dict[str, list[object]], *, attempts: int = 2, deadline: float = 60.0,
                breaker: CircuitBreaker | None = None) -> tuple[Router, ScriptedProvider, FakeClock]:
    clock = FakeClock()
    provider = ScriptedProvider(clock, script)
    router = Router(parse_catalog(CATALOG, credentials=KEYS),
                    policy=RetryPolicy(attempts=attempts, base_backoff_s=0.5, max_backoff_s=4.0, deadline_s=deadline),
                    breaker=breaker or CircuitBreaker(5, 30.0, clock), providers=lambda name: provider,
                    clock=clock, sleep=clock.sleep, jitter=lambda: 1.0)
    return router, provider, clock


def test_first_deployment_answers_and_is_billed_from_its_price() -> None:
    router, provider, _ = make_router({"primary": [Usage(input_tokens=1000, output_tokens=500)]})
    routed = router.complete("fast", REQUEST)
    assert routed.deployment.name == "primary"
    assert routed.cost_usd == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert [a.outcome for a in routed.attempts] == ["ok"]


def test_rate_limit_honours_retry_after_then_succeeds_on_same_deployment() -> None:
    router, provider, clock = make_router({"primary": [errors.RateLimited("slow down", status=429, retry_after=1.5),
                                                       Usage(input_tokens=10, output_tokens=5)]})
    routed = router.complete("fast", REQUEST)
    assert clock.slept == [1.5]
    assert [a.outcome for a in routed.attempts] == ["rate_limited", "ok"]
    assert routed.attempts[0].retry_after_s == 1.5 and routed.attempts[1].waited_ms == 1500.0


def test_long_retry_after_falls_back_instead_of_waiting() -> None:
    router, _, clock = make_router({"primary": [errors.RateLimited("later", status=429, retry_after=120)],
                                    "secondary": [Usage(input_tokens=10, output_tokens=5)]})
    routed = router.complete("fast", REQUEST)
    assert clock.slept == []
    assert routed.deployment.name == "secondary"


def test_exponential_backoff_then_fallback_after_retries() -> None:
    failures = [errors.ServerError("boom", status=500) for _ in range(3)]
    router, provider, clock = make_router({"primary": failures, "secondary": [Usage(input_tokens=1, output_tokens=1)]})
    routed = router.complete("fast", REQUEST)
    assert clock.slept == [0.5, 1.0]  # base * 2^n with jitter pinned to its ceiling
    assert [c[0] for c in provider.calls] == ["primary"] * 3 + ["secondary"]
    assert [a.outcome for a in routed.attempts] == ["server_error"] * 3 + ["ok"]
    # only the successful attempt is billed: the secondary's price
    assert routed.cost_usd == pytest.approx((1 * 3.0 + 1 * 4.0) / 1e6)


def test_timeout_falls_back_at_once() -> None:
    router, provider, _ = make_router({"primary": ["timeout"], "secondary": [Usage(input_tokens=1, output_tokens=1)]})
    routed = router.complete("fast", REQUEST)
    assert [a.outcome for a in routed.attempts] == ["timeout", "ok"]
    assert provider.calls[0] == ("primary", 5.0)  # the deployment's own timeout


def test_context_length_falls_back_without_retry() -> None:
    router, provider, _ = make_router({"primary": [errors.ContextLengthExceeded("too long", status=400)],
                                       "secondary": [Usage(input_tokens=1, output_tokens=1)]})
    assert router.complete("fast", REQUEST).deployment.name == "secondary"
    assert len(provider.calls) == 2


def test_invalid_request_stops_without_trying_others() -> None:
    router, provider, _ = make_router({"primary": [errors.InvalidRequest("bad tool schema", status=400)]})
    with pytest.raises(errors.InvalidRequest) as caught:
        router.complete("fast", REQUEST)
    assert len(provider.calls) == 1
    assert [a.outcome for a in caught.value.attempts] == ["invalid_request"]


def test_all_failing_raises_typed_error_with_every_attempt() -> None:
    router, _, _ = make_router({"primary": [errors.AuthenticationFailed("bad key", status=401)],
                                "secondary": [errors.Overloaded("busy", status=529)] * 3,
                                "tertiary": [errors.ProviderUnavailable("reset")] * 3}, attempts=0)
    with pytest.raises(errors.AllDeploymentsFailed) as caught:
        router.complete("fast", REQUEST)
    assert [(a.deployment, a.outcome) for a in caught.value.attempts] == [
        ("primary", "authentication_failed"), ("secondary", "overloaded"), ("tertiary", "connection_error")]
    assert "primary: authentication_failed" in str(caught.value)


def test_deadline_bounds_attempt_timeouts_and_stops_the_request() -> None:
    router, provider, _ = make_router({"primary": ["timeout"], "secondary": ["timeout"]}, deadline=7.0)
    with pytest.raises(errors.DeadlineExceeded) as caught:
        router.complete("fast", REQUEST)
    # the primary's own 5 s timeout, then the 2 s left for the secondary, then nothing for the tertiary
    assert provider.calls == [("primary", 5.0), ("secondary", 2.0)]
    assert [a.outcome for a in caught.value.attempts] == ["timeout", "timeout"]


def test_missing_credentials_skip_the_deployment() -> None:
    clock = FakeClock()
    provider = ScriptedProvider(clock, {"tertiary": [Usage(input_tokens=1, output_tokens=1)]})
    router = Router(parse_catalog(CATALOG), providers=lambda name: provider, clock=clock, sleep=clock.sleep)
    routed = router.complete("fast", REQUEST)
    assert [(a.deployment, a.outcome) for a in routed.attempts] == [
        ("primary", "not_configured"), ("secondary", "not_configured"), ("tertiary", "ok")]


def test_circuit_opens_after_repeated_failures_and_half_opens_after_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 30.0, clock)
    script: dict[str, list[object]] = {"primary": [errors.ServerError("x", status=500)] * 2,
                                       "secondary": [Usage(input_tokens=1, output_tokens=1)] * 3}
    provider = ScriptedProvider(clock, script)
    router = Router(parse_catalog(CATALOG, credentials=KEYS), policy=RetryPolicy(attempts=0), breaker=breaker,
                    providers=lambda name: provider, clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)
    router.complete("fast", REQUEST)
    router.complete("fast", REQUEST)
    assert breaker.is_open("primary")
    third = router.complete("fast", REQUEST)
    assert [a.outcome for a in third.attempts] == ["circuit_open", "ok"]
    clock.now += 31
    script["primary"].append(Usage(input_tokens=1, output_tokens=1))
    fourth = router.complete("fast", REQUEST)
    assert fourth.deployment.name == "primary" and not breaker.is_open("primary")


def test_unknown_alias_is_not_found_naming_the_field() -> None:
    router, _, _ = make_router({})
    with pytest.raises(Exception) as caught:
        router.complete("nope", REQUEST)
    assert getattr(caught.value, "field", None) == "model"


def test_tenant_override_orders_deployments() -> None:
    router, _, _ = make_router({"tertiary": [Usage(input_tokens=1, output_tokens=1)]})
    assert router.complete("fast", REQUEST, override=["tertiary", "primary"]).deployment.name == "tertiary"


def test_stream_falls_back_before_first_chunk() -> None:
    router, _, _ = make_router({"primary": [errors.Overloaded("busy", status=529)] * 3,
                                "secondary": [Usage(input_tokens=4, output_tokens=2)]}, attempts=0)
    stream = router.stream("fast", REQUEST)
    text = "".join(c.text for c in stream)
    assert text == "hi "
    assert stream.deployment is not None and stream.deployment.name == "secondary"
    assert stream.usage == Usage(input_tokens=4, output_tokens=2)
    assert stream.cost_usd == pytest.approx((4 * 3.0 + 2 * 4.0) / 1e6)


def test_stream_cut_after_text_raises_and_is_not_billed() -> None:
    cut = [StreamChunk(text="partial "), errors.StreamInterrupted("connection dropped")]
    router, provider, _ = make_router({"primary": [cut], "secondary": [Usage(input_tokens=1, output_tokens=1)]})
    stream = router.stream("fast", REQUEST)
    received = []
    with pytest.raises(errors.StreamInterrupted):
        for chunk in stream:
            received.append(chunk.text)
    assert received == ["partial "]
    assert [c[0] for c in provider.calls] == ["primary"]  # no fallback once text was shown
    assert stream.cost_usd == 0.0 and stream.deployment is None


def test_stream_that_ends_without_final_event_is_an_interruption() -> None:
    router, _, _ = make_router({"primary": [[StreamChunk(text="a")]]})
    with pytest.raises(errors.StreamInterrupted):
        list(router.stream("solo", REQUEST))


@pytest.mark.parametrize(("failure", "trips"), [
    (errors.ServerError("x", status=500), True),
    (errors.Overloaded("x", status=529), True),
    (errors.ProviderUnavailable("x"), True),
    (errors.MalformedResponse("x", status=200), True),
    (errors.RateLimited("x", status=429), False),  # the account's quota: retry-after says when, not a breaker
    (errors.AuthenticationFailed("x", status=401), False),  # the operator's credentials: alarmed apart
    (errors.ContextLengthExceeded("x", status=400), False),  # the caller's request
])
def test_only_provider_side_failures_open_the_circuit(failure: errors.ProviderError, trips: bool) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(2, 30.0, clock)
    script: dict[str, list[object]] = {"primary": [failure] * 3, "secondary": [Usage(input_tokens=1)] * 3}
    provider = ScriptedProvider(clock, script)
    router = Router(parse_catalog(CATALOG, credentials=KEYS), policy=RetryPolicy(attempts=0), breaker=breaker,
                    providers=lambda name: provider, clock=clock, sleep=clock.sleep, jitter=lambda: 0.0)
    for _ in range(3):
        router.complete("fast", REQUEST)
    assert breaker.is_open("primary") is trips
    assert [name for name, _ in provider.calls].count("primary") == (2 if trips else 3)


def test_a_bad_request_never_opens_the_circuit_for_other_callers() -> None:
    router, provider, _ = make_router({"primary": [errors.InvalidRequest("bad", status=400)] * 6 + [Usage()]},
                                      breaker=CircuitBreaker(2, 30.0))
    for _ in range(6):
        with pytest.raises(errors.InvalidRequest):
            router.complete("solo", REQUEST)
    assert router.complete("solo", REQUEST).deployment.name == "primary"


def test_every_circuit_open_is_a_circuit_open_failure_with_the_cooldown_left() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(1, 30.0, clock)
    router, _, _ = make_router({"primary": [errors.ServerError("x", status=500)]}, attempts=0, breaker=breaker)
    router.clock = router.breaker.clock = clock
    with pytest.raises(errors.AllDeploymentsFailed):
        router.complete("solo", REQUEST)
    clock.now += 10
    with pytest.raises(errors.AllDeploymentsFailed) as caught:
        router.complete("solo", REQUEST)
    assert isinstance(caught.value.last, errors.CircuitOpen)
    assert caught.value.last.retry_after == pytest.approx(20.0)


def test_every_deployment_rate_limited_decides_a_rate_limit_but_a_mix_is_overload() -> None:
    limited = [errors.RateLimited("slow", status=429, retry_after=30)]
    router, _, _ = make_router({"primary": list(limited), "secondary": list(limited), "tertiary": list(limited)},
                               attempts=0)
    with pytest.raises(errors.AllDeploymentsFailed) as caught:
        router.complete("fast", REQUEST)
    assert type(caught.value.last) is errors.RateLimited and caught.value.retry_after == 30
    router, _, _ = make_router({"primary": [errors.ServerError("x", status=500)], "secondary": list(limited),
                                "tertiary": list(limited)}, attempts=0)
    with pytest.raises(errors.AllDeploymentsFailed) as caught:
        router.complete("fast", REQUEST)
    assert type(caught.value.last) is errors.Overloaded and caught.value.last.retry_after == 30


def test_rejected_credentials_are_logged_for_the_operators_alarm(caplog: pytest.LogCaptureFixture) -> None:
    from stratus.llm.router import AUTH_FAILED_EVENT

    router, _, _ = make_router({"primary": [errors.AuthenticationFailed("no", status=401)],
                                "secondary": [Usage(input_tokens=1)]}, attempts=0)
    with caplog.at_level("ERROR", logger="stratus.llm.router"):
        assert router.complete("fast", REQUEST).deployment.name == "secondary"
    assert any(AUTH_FAILED_EVENT in r.getMessage() and "primary" in r.getMessage() for r in caplog.records)
