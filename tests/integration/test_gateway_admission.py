"""Admission against the embedded database: exact limits under concurrency, budgets, settlement, windows."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from stratus.config import get_settings
from stratus.db import limits as store
from stratus.db.connection import connect, tenant_transaction
from stratus.gateway import admission, keys, tenancy
from stratus.gateway.admission import Admission
from stratus.gateway.keys import Principal

NOW = datetime(2025, 3, 14, 12, 0, 5, tzinfo=UTC)  # 55 s left in its minute window
N = 24


def principal_for(db, tenant_id: str, **key_limits: int) -> Principal:
    text, _ = keys.create_key(db, tenant_id, name="admission", **key_limits)
    found = keys.authenticate(db, f"Bearer {text}")
    assert found is not None
    return found


def race(pg_url: str, attempt: Callable[[object, int], Admission]) -> list[Admission]:
    """N threads, each on its own connection, released together."""
    barrier = threading.Barrier(N)
    results: list[Admission | BaseException] = [None] * N  # type: ignore[list-item]

    def run(i: int) -> None:
        conn = connect(pg_url)
        try:
            barrier.wait()
            results[i] = attempt(conn, i)
        except BaseException as err:  # surfaced below, not swallowed
            results[i] = err
        finally:
            conn.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return results  # type: ignore[return-value]


def counters(db, tenant_id: str) -> list[tuple]:
    with tenant_transaction(tenant_id, db):
        return db.execute("SELECT subject, window_start, requests, tokens FROM rate_counters WHERE tenant_id = %s"
                          " ORDER BY subject", [tenant_id]).fetchall()


def test_exactly_the_request_limit_is_admitted_under_concurrency(pg_url: str, db, tenant_id: str) -> None:
    # Given a key limited to 10 requests a minute
    p = principal_for(db, tenant_id, requests_per_minute=10)
    # When 24 requests race for it
    results = race(pg_url, lambda conn, i: admission.admit(conn, p, request_id=f"r{i}", estimated_tokens=5,
                                                           max_cost_usd=0, now=NOW))
    # Then exactly 10 are admitted; the others are refused by the key's request limit, retrying at the window end
    admitted = [r for r in results if r.admitted]
    assert len(admitted) == 10
    refused = [r for r in results if not r.admitted]
    assert {(r.reason, r.scope) for r in refused} == {("requests", "key")}
    assert all(r.retry_after_s == pytest.approx(55) for r in refused)
    assert all(r.headers["x-ratelimit-remaining-requests"] == "0" for r in refused)
    assert all(r.headers["x-ratelimit-reset-requests"] == "55s" for r in refused)
    assert "limit 10, used 10" in refused[0].message and p.key_prefix in refused[0].message
    # and the windows hold 10 requests and 50 tokens, for the key and the tenant alike
    assert [(s.split(":")[0], r, t) for s, _, r, t in counters(db, tenant_id)] == [("key", 10, 50), ("tenant", 10, 50)]


def test_exactly_the_token_limit_is_admitted_under_concurrency(pg_url: str, db, tenant_id: str) -> None:
    # Given a tenant limited to 1,000 tokens a minute, and requests that reserve 100 each
    tenancy.set_limits(db, tenant_id, tokens_per_minute=1000)
    p = principal_for(db, tenant_id)
    results = race(pg_url, lambda conn, i: admission.admit(conn, p, request_id=f"r{i}", estimated_tokens=100,
                                                           max_cost_usd=0, now=NOW))
    assert sum(r.admitted for r in results) == 10
    assert {(r.reason, r.scope) for r in results if not r.admitted} == {("tokens", "tenant")}
    ok = next(r for r in results if r.admitted)
    assert ok.reserved_tokens == 100 and ok.headers["x-ratelimit-limit-tokens"] == "1000"
    assert [(r, t) for _, _, r, t in counters(db, tenant_id)] == [(10, 1000)]


def test_concurrency_cannot_overspend_the_budget(pg_url: str, db, tenant_id: str) -> None:
    # Given a $1 daily budget, and 24 concurrent requests that may cost up to $0.15 each
    tenancy.set_limits(db, tenant_id, budget_usd=1.0, budget_period="day")
    p = principal_for(db, tenant_id)

    def attempt(conn, i: int) -> Admission:
        result = admission.admit(conn, p, request_id=f"r{i}", estimated_tokens=10, max_cost_usd=0.15, now=NOW)
        if result.admitted:  # each then costs what it was allowed to, at most
            admission.settle(conn, p, request_id=f"r{i}", tokens=10, cost_usd=0.15, now=NOW)
        return result

    results = race(pg_url, attempt)
    # Then 6 ran ($0.90); the 7th would have passed the budget, and every later one is refused as budget
    assert sum(r.admitted for r in results) == 6
    refused = [r for r in results if not r.admitted]
    assert {(r.reason, r.scope) for r in refused} == {("budget", "tenant")}
    assert "Budget exhausted" in refused[0].message and "this day" in refused[0].message
    assert refused[0].retry_after_s == pytest.approx(12 * 3600 - 5)  # until midnight UTC
    u = tenancy.usage(db, tenant_id, now=NOW)
    assert u["spent_usd"] == pytest.approx(0.90) and u["reserved_usd"] == 0 and u["spent_usd"] <= 1.0


def test_a_refused_request_counts_nothing(db, tenant_id: str) -> None:
    tenancy.set_limits(db, tenant_id, requests_per_minute=100, tokens_per_minute=500, budget_usd=0.5)
    p = principal_for(db, tenant_id)
    assert admission.admit(db, p, request_id="a", estimated_tokens=300, max_cost_usd=0.2, now=NOW).admitted
    before = counters(db, tenant_id)
    usage_before = tenancy.usage(db, tenant_id, now=NOW)
    # refused by tokens, then by budget: neither moves a counter or reserves anything
    by_tokens = admission.admit(db, p, request_id="b", estimated_tokens=300, max_cost_usd=0.1, now=NOW)
    by_budget = admission.admit(db, p, request_id="c", estimated_tokens=10, max_cost_usd=0.4, now=NOW)
    assert (by_tokens.reason, by_budget.reason) == ("tokens", "budget")
    assert counters(db, tenant_id) == before
    assert tenancy.usage(db, tenant_id, now=NOW) == usage_before
    with tenant_transaction(tenant_id, db):
        assert store.reservation(db, tenant_id, "b") is None and store.reservation(db, tenant_id, "c") is None
    # a request larger than the whole token limit says so
    too_big = admission.admit(db, p, request_id="d", estimated_tokens=501, max_cost_usd=0, now=NOW)
    assert too_big.reason == "tokens" and "Request too large" in too_big.message


def test_settle_replaces_the_reservation_once_and_releases_on_failure(db, tenant_id: str) -> None:
    tenancy.set_limits(db, tenant_id, budget_usd=1.0)
    p = principal_for(db, tenant_id)
    assert admission.admit(db, p, request_id="ok", estimated_tokens=400, max_cost_usd=0.5, now=NOW).admitted
    assert admission.admit(db, p, request_id="fail", estimated_tokens=400, max_cost_usd=0.4, now=NOW).admitted
    assert tenancy.usage(db, tenant_id, now=NOW)["reserved_usd"] == pytest.approx(0.9)
    assert not admission.admit(db, p, request_id="x", estimated_tokens=1, max_cost_usd=0.2, now=NOW).admitted

    # the real figures replace the reservation, twice is once; a failure releases everything it held
    for _ in range(2):
        admission.settle(db, p, request_id="ok", tokens=120, cost_usd=0.01, now=NOW)
    admission.settle(db, p, request_id="fail", tokens=0, cost_usd=0, now=NOW)
    u = tenancy.usage(db, tenant_id, now=NOW)
    assert (u["spent_usd"], u["reserved_usd"], u["in_flight"]) == (pytest.approx(0.01), 0, 0)
    assert (u["requests"], u["tokens"]) == (1, 120)  # spend counts the request that ran, as used
    # so the budget has room again
    assert admission.admit(db, p, request_id="y", estimated_tokens=1, max_cost_usd=0.2, now=NOW).admitted


def test_windows_roll_over_and_abandoned_reservations_expire(db, tenant_id: str) -> None:
    tenancy.set_limits(db, tenant_id, requests_per_minute=2, budget_usd=1.0)
    p = principal_for(db, tenant_id)
    for i in range(2):
        assert admission.admit(db, p, request_id=f"r{i}", estimated_tokens=1, max_cost_usd=0.5, now=NOW).admitted
    assert admission.admit(db, p, request_id="r2", estimated_tokens=1, max_cost_usd=0, now=NOW).reason == "requests"

    # the next minute admits again, but the unsettled reservations still hold the whole budget
    later = NOW + timedelta(seconds=60)
    assert admission.admit(db, p, request_id="r3", estimated_tokens=1, max_cost_usd=0.1, now=later).reason == "budget"
    ok = admission.admit(db, p, request_id="r4", estimated_tokens=1, max_cost_usd=0, now=later)
    assert ok.admitted and ok.headers["x-ratelimit-remaining-requests"] == "1"
    # settling r0 late moves no tokens into the new window
    admission.settle(db, p, request_id="r0", tokens=50, cost_usd=0.0, now=later)
    assert [r for _, _, r, _ in counters(db, tenant_id)] == [1]
    assert counters(db, tenant_id)[0][3] == 1

    # ten minutes on, r1 was abandoned: its reservation expired and no longer counts
    much_later = NOW + admission.RESERVATION_TTL + timedelta(seconds=1)
    assert admission.admit(db, p, request_id="r5", estimated_tokens=1, max_cost_usd=0.9, now=much_later).admitted
    with tenant_transaction(tenant_id, db):
        assert store.reservation(db, tenant_id, "r1") is None


def test_key_limits_fall_back_to_the_tenant_default_then_settings(db, tenant_id: str) -> None:
    p = principal_for(db, tenant_id)
    assert get_settings().key_requests_per_minute is None  # no key limit by default: only the tenant's
    first = admission.admit(db, p, request_id=uuid.uuid4().hex, estimated_tokens=1, max_cost_usd=0, now=NOW)
    assert first.headers["x-ratelimit-limit-requests"] == str(get_settings().tenant_requests_per_minute)
    tenancy.set_limits(db, tenant_id, key_requests_per_minute=1)
    admission.admit(db, p, request_id=uuid.uuid4().hex, estimated_tokens=1, max_cost_usd=0, now=NOW)
    again = admission.admit(db, p, request_id=uuid.uuid4().hex, estimated_tokens=1, max_cost_usd=0, now=NOW)
    assert (again.reason, again.scope) == ("requests", "key")
    own = principal_for(db, tenant_id, requests_per_minute=5)  # a key's own limit wins over the tenant's default
    assert admission.admit(db, own, request_id=uuid.uuid4().hex, estimated_tokens=1, max_cost_usd=0, now=NOW).admitted
