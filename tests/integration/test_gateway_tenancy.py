"""Keys, tenants, limits and traces against the embedded database, as the application role (RLS on)."""

from __future__ import annotations

import hmac
import logging
import uuid

import pytest

from stratus.db.connection import tenant_transaction
from stratus.errors import InvalidInput, NotFound
from stratus.gateway import keys, tenancy, traces
from stratus.gateway.traces import TraceRecord


def test_a_key_is_shown_once_stored_as_a_hash_and_authenticates(db, tenant_id: str) -> None:
    text, info = keys.create_key(db, tenant_id, name="ci", scopes=["inference"], tokens_per_minute=500)
    assert text.startswith(f"sk-stratus-{info.prefix}_") and info.scopes == ["inference"]
    with tenant_transaction(tenant_id, db):
        stored = db.execute("SELECT key_hash FROM api_keys WHERE id = %s", [info.id]).fetchone()[0]
    assert bytes(stored) == keys.hash_key(text) and text.encode() not in bytes(stored)

    principal = keys.authenticate(db, f"Bearer {text}")
    assert principal == keys.Principal(tenant_id, info.id, info.prefix, frozenset({"inference"}), None, 500)
    # last use is recorded (at most once a minute, so most requests write nothing)
    assert keys.list_keys(db, tenant_id)[0].last_used_at is not None


def test_unknown_wrong_and_revoked_keys_are_refused_after_the_same_work(db, tenant_id: str, monkeypatch) -> None:
    good, _ = keys.create_key(db, tenant_id)
    revoked, info = keys.create_key(db, tenant_id)
    keys.revoke_key(db, tenant_id, info.prefix)
    _, unknown = keys.new_key_text()
    wrong = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    compared: list[bytes] = []
    real = hmac.compare_digest
    monkeypatch.setattr(keys.hmac, "compare_digest", lambda a, b: compared.append(b) or real(a, b))
    for presented in (unknown, wrong, revoked):
        assert keys.authenticate(db, f"Bearer {presented}") is None
    # each did one full comparison: the unknown prefix against the dummy digest, the others against their row
    assert len(compared) == 3 and all(len(b) == 32 for b in compared)
    assert compared[0] == keys._DUMMY_HASH and compared[1] != keys._DUMMY_HASH
    for header in (None, "", "Basic xyz", "Bearer sk-stratus-short"):
        assert keys.authenticate(db, header) is None
    assert keys.authenticate(db, f"Bearer {good}") is not None


def test_keys_are_listed_and_revoked_only_within_their_tenant(db, tenant_id: str, new_tenant) -> None:
    other = new_tenant()
    _, mine = keys.create_key(db, tenant_id, name="mine")
    _, theirs = keys.create_key(db, other, name="theirs", scopes=["admin"])
    assert [k.name for k in keys.list_keys(db, tenant_id)] == ["mine"]
    # by prefix or id, but never another tenant's
    with pytest.raises(NotFound, match="has no key"):
        keys.revoke_key(db, tenant_id, theirs.prefix)
    with pytest.raises(NotFound):
        keys.revoke_key(db, tenant_id, theirs.id)
    first = keys.revoke_key(db, tenant_id, mine.id)
    assert first.revoked and keys.revoke_key(db, tenant_id, mine.prefix).revoked_at == first.revoked_at
    assert not keys.list_keys(db, other)[0].revoked
    # RLS: bound to one tenant, the application role sees none of the other's key rows
    with tenant_transaction(tenant_id, db):
        assert db.execute("SELECT count(*) FROM api_keys WHERE tenant_id = %s", [other]).fetchone()[0] == 0
    with db.transaction():  # no tenant bound: nothing at all
        assert db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 0


def test_key_creation_checks_its_input(db, tenant_id: str) -> None:
    with pytest.raises(InvalidInput, match="unknown scope") as err:
        keys.create_key(db, tenant_id, scopes=["inference", "root"])
    assert err.value.field == "scopes"
    with pytest.raises(InvalidInput, match="requests_per_minute"):
        keys.create_key(db, tenant_id, requests_per_minute=0)
    with pytest.raises(NotFound, match="no tenant"):
        keys.create_key(db, f"missing-{uuid.uuid4().hex[:8]}")


def test_tenants_are_created_once_and_listed_across_tenants(db) -> None:
    tid = f"acme-{uuid.uuid4().hex[:8]}"
    made = tenancy.create_tenant(db, tid, name="Acme")
    assert (made["id"], made["name"], made["created"]) == (tid, "Acme", True)
    again = tenancy.create_tenant(db, tid, name="other")
    assert (again["name"], again["created"]) == ("Acme", False)
    with pytest.raises(InvalidInput, match="already exists"):
        tenancy.create_tenant(db, tid, exist_ok=False)
    assert tid in [t["id"] for t in tenancy.list_tenants(db)]
    with pytest.raises(InvalidInput, match="tenant_id 'Bad Id' must match"):
        tenancy.create_tenant(db, "Bad Id")


def test_limits_default_override_and_clear(db, tenant_id: str) -> None:
    limits = tenancy.get_limits(db, tenant_id)
    assert limits["budget_usd"] is None and limits["custom"] == [] and limits["budget_period"] == "month"
    changed = tenancy.set_limits(db, tenant_id, requests_per_minute=5, budget_usd=12.5, budget_period="day")
    assert (changed["requests_per_minute"], changed["budget_usd"], changed["budget_period"]) == (5, 12.5, "day")
    assert changed["custom"] == ["budget_usd", "requests_per_minute"]
    cleared = tenancy.set_limits(db, tenant_id, requests_per_minute=None)
    assert cleared["requests_per_minute"] == limits["requests_per_minute"] and cleared["budget_usd"] == 12.5
    for bad, field in (({"requests_per_minute": 0}, "requests_per_minute"), ({"budget_usd": -1}, "budget_usd"),
                       ({"budget_period": "week"}, "budget_period"), ({"burst": 3}, "burst")):
        with pytest.raises(InvalidInput) as err:
            tenancy.set_limits(db, tenant_id, **bad)
        assert err.value.field == field
    with pytest.raises(NotFound):
        tenancy.get_limits(db, f"missing-{uuid.uuid4().hex[:8]}")


def trace(tenant_id: str, request_id: str, **fields) -> TraceRecord:
    base = {"key_prefix": "abcdefghijkl", "route": "/v1/chat/completions", "method": "POST", "status_code": 200,
            "latency_ms": 12.5}
    return TraceRecord(request_id=request_id, tenant_id=tenant_id, **{**base, **fields})


def test_traces_are_stored_per_tenant(db, tenant_id: str, new_tenant) -> None:
    other = new_tenant()
    traces.record_trace(trace(tenant_id, "req_1", model_alias="fast", deployment="offline-small", input_tokens=10,
                              output_tokens=4, cost_usd=0.0001, cache_status="miss", chunk_ids=[3, 7],
                              timings_ms={"auth": 0.4, "generate": 9.1}), db)
    traces.record_trace(trace(tenant_id, "req_2", status="error", status_code=429, error_code="rate_limit_exceeded",
                              error_message="x" * 5000), db)
    got = traces.get_trace(db, tenant_id, "req_1")
    assert got is not None and got["chunk_ids"] == [3, 7] and got["timings_ms"] == {"auth": 0.4, "generate": 9.1}
    assert got["cost_usd"] == pytest.approx(0.0001) and got["deployment"] == "offline-small"
    listed = traces.list_traces(db, tenant_id)
    assert [t["request_id"] for t in listed] == ["req_2", "req_1"] and len(listed[0]["error_message"]) == 2000
    # another tenant sees none of them, even asking by request id
    assert traces.get_trace(db, other, "req_1") is None and traces.list_traces(db, other) == []


def test_a_trace_that_cannot_be_written_is_logged_not_raised(db, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="stratus.gateway.traces"):
        traces.record_trace(trace(f"missing-{uuid.uuid4().hex[:8]}", "req_lost"), db)  # no such tenant: FK fails
    assert "trace not recorded" in caplog.text
    assert db.execute("SELECT 1").fetchone() == (1,)  # the connection is still usable
