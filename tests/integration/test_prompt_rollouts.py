"""Progressive prompt rollout through the HTTP API and the real database: a rollout splits a label's traffic
by sticky key (each user stays on its side), the requests it split are sampled with the version each was
served, the sampler rolls back a candidate that scores worse (share 0, an audit row by the sampler) and
leaves a better one running, which then completes (the label moves); another tenant neither sees nor is
served the rollout; bad input is a 400 naming the field."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from stratus import audit
from stratus.config import Settings, load_settings
from stratus.db import evals as eval_store
from stratus.db.connection import connect, tenant_transaction
from stratus.evals.sampler import run_sampler
from stratus.prompts.rollout import on_candidate
from tests.integration.gateway_support import auth, key_for, tenant_with_key

PROMPT = {"model": "fast", "variables": [],
          "messages": [{"role": "system", "content": "You answer briefly."}, {"placeholder": "history"}]}


@pytest.fixture(scope="module")
def settings(pg_url: str) -> Settings:
    # Only requests a rollout split are sampled (all of them), so the samples are the rollout's.
    return load_settings(database_url=pg_url, eval_sample_rate=0.0, eval_rollout_sample_rate=1.0,
                         cache_enabled=False)


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TestClient]:
    from stratus.gateway.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def conn(pg_url: str) -> Iterator[Any]:
    c = connect(pg_url)
    yield c
    c.close()


def publish_two_versions(pg_url: str) -> str:
    """A new prompt published at v1 and v2 whose global `production` label serves v1 (as the owner publishes)."""
    from stratus.prompts.models import build_prompt
    from stratus.prompts.registry import promote

    name = f"ro-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url) as owner:
        for version in (1, 2):
            p = build_prompt(name, version, {**PROMPT, "description": f"version {version}"}, source="test")
            owner.execute("INSERT INTO prompt_versions (name, version, content, content_hash) VALUES (%s, %s, %s, %s)",
                          [name, version, psycopg.types.json.Jsonb(p.canonical()), p.content_hash])
        promote(owner, name, 1, "production")
        owner.commit()
    return name


@pytest.fixture
def setup(pg_url: str) -> dict[str, Any]:
    """Tenants A and B, each with an admin key and an inference key, and a prompt at v1 and v2 (v1 served)."""
    out: dict[str, Any] = {"name": publish_two_versions(pg_url), "url": pg_url}
    for side in ("a", "b"):
        tenant, admin = tenant_with_key(pg_url, f"ro{side}", scopes=["admin"])
        out[side] = {"tenant": tenant, "admin": auth(admin), "user": auth(key_for(pg_url, tenant))}
    return out


def _start(client: TestClient, setup: dict[str, Any], side: str = "a", **body: Any) -> dict[str, Any]:
    t = setup[side]
    r = client.post(f"/v1/admin/tenants/{t['tenant']}/prompts/{setup['name']}/rollouts",
                    json={"version": 2, "label": "production", **body}, headers=t["admin"])
    assert r.status_code == 201, r.text
    return dict(r.json())


def _ask(client: TestClient, setup: dict[str, Any], user: str, side: str = "a", **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/chat/completions", headers=setup[side]["user"],
                    json={"model": "fast", "messages": [{"role": "user", "content": "What is a rollout?"}],
                          "user": user, "stratus": {"prompt": setup["name"], **extra}})
    assert r.status_code == 200, r.text
    return dict(r.json()["stratus"]["prompt"])


def _rows(setup: dict[str, Any], side: str = "a") -> list[dict[str, Any]]:
    with psycopg.connect(setup["url"]) as owner:
        return list(audit.stored_rows(owner, setup[side]["tenant"]))


def test_a_rollout_splits_traffic_by_user_sticky_and_only_for_its_tenant(client: TestClient, setup: Any,
                                                                          conn: Any) -> None:
    rollout = _start(client, setup, share=50, sticky_by="user")
    assert (rollout["state"], rollout["share"], rollout["baseline_version"]) == ("active", 50.0, 1)

    served = {f"u{i}": _ask(client, setup, f"u{i}") for i in range(24)}
    expected = {u: 2 if on_candidate(rollout["id"], 50, f"user:{u}") else 1 for u in served}
    assert {u: p["version"] for u, p in served.items()} == expected
    assert {1, 2} == set(expected.values())  # both sides got traffic
    assert all(p["rollout_id"] == rollout["id"] for p in served.values())
    assert all(_ask(client, setup, u)["version"] == expected[u] for u in ("u0", "u1", "u2", "u3"))  # sticky
    streamed = client.post("/v1/chat/completions", headers=setup["a"]["user"],
                           json={"model": "fast", "messages": [{"role": "user", "content": "What is a rollout?"}],
                                 "user": "u5", "stream": True, "stratus": {"prompt": setup["name"]}})
    final = next(json.loads(line[6:]) for line in streamed.text.splitlines()
                 if line.startswith("data: {") and '"stratus"' in line)
    assert final["stratus"]["prompt"] == {"name": setup["name"], "version": expected["u5"],
                                          "rollout_id": rollout["id"]}

    # Each request the rollout split was sampled with the version it was served
    with tenant_transaction(setup["a"]["tenant"], conn):
        kept = dict(conn.execute("SELECT request_id, prompt_version FROM eval_samples WHERE tenant_id = %s"
                                 " AND rollout_id = %s", [setup["a"]["tenant"], rollout["id"]]).fetchall())
    assert len(kept) == 29 and sorted(set(kept.values())) == [1, 2]

    # Tenant B: served the label's version, never sees A's rollout nor reaches it by id
    b, base = setup["b"], f"/v1/admin/tenants/{setup['b']['tenant']}/prompts/{setup['name']}/rollouts"
    assert all("rollout_id" not in _ask(client, setup, f"u{i}", side="b") for i in range(8))
    assert {_ask(client, setup, f"u{i}", side="b")["version"] for i in range(8)} == {1}
    assert client.get(base, headers=b["admin"]).json()["data"] == []
    assert client.get(f"{base}/{rollout['id']}", headers=b["admin"]).status_code == 404
    gone = client.delete(f"{base}/{rollout['id']}", headers=b["admin"])
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "rollout_id"
    listed = client.get(f"/v1/admin/tenants/{setup['a']['tenant']}/prompts/{setup['name']}/rollouts",
                        headers=setup["a"]["admin"]).json()["data"]
    assert [(r["id"], r["state"]) for r in listed] == [(rollout["id"], "active")]
    assert listed[0]["check"]["decision"] == "insufficient"


def _samples(conn: Any, setup: dict[str, Any], rollout_id: str, good_version: int, count: int = 6,
             batch: str = "") -> None:
    """Samples of the rollout's two versions as the gateway keeps them: `good_version`'s answers were fast
    and leaked nothing; the other's were slow and carried PII the caller had not sent."""
    tenant = setup["a"]["tenant"]
    with tenant_transaction(tenant, conn):
        for version in (1, 2):
            good = version == good_version
            for i in range(count):
                eval_store.insert_sample(conn, {
                    "tenant_id": tenant, "request_id": f"s-{rollout_id[:8]}{batch}-{version}-{i}", "mode": "chat",
                    "prompt_name": setup["name"], "prompt_version": version, "rollout_id": rollout_id,
                    "question": "What is a rollout?", "answer": "A share of traffic on a new version.",
                    "latency_ms": 120.0 if good else 20_000.0, "cost_usd": 0.0,
                    "facts": {"answer_pii": [] if good else ["EMAIL_ADDRESS"]}})


def _sample(settings: Settings, conn: Any, setup: dict[str, Any], since: datetime) -> Any:
    """A sampler run over (since, now]: the samples written so far. Its window ends now, not later, so the
    next run's default window (other modules' tests) starts where this one ended and loses nothing."""
    return run_sampler(settings=settings, conn=conn, tenants=[setup["a"]["tenant"]], since=since,
                       now=datetime.now(UTC))


def test_a_candidate_that_scores_worse_is_rolled_back_by_the_sampler_and_audited(
        client: TestClient, settings: Settings, setup: Any, conn: Any) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    rollout = _start(client, setup, share=30, min_samples=5, margin=0.1)
    _samples(conn, setup, rollout["id"], good_version=1)

    result = _sample(settings, conn, setup, since)
    [check] = [r for r in result.rollouts if r["rollout_id"] == rollout["id"]]
    assert check["action"] == "rolled_back" and check["decision"] == "regression"
    assert check["candidate"]["mean"] < check["baseline"]["mean"] - 0.1
    assert any(m.name == "RolloutsRolledBack" and m.value == 1 for m in result.metrics)

    base = f"/v1/admin/tenants/{setup['a']['tenant']}/prompts/{setup['name']}/rollouts"
    shown = client.get(f"{base}/{rollout['id']}", headers=setup["a"]["admin"]).json()
    assert (shown["state"], shown["share"]) == ("rolled_back", 0.0)
    assert shown["reason"].startswith("regression: overall: candidate v2")
    assert {_ask(client, setup, f"u{i}")["version"] for i in range(12)} == {1}  # the candidate serves no one

    rows = _rows(setup)
    assert [r["action"] for r in rows] == ["rollout.start", "rollout.rollback"]
    rolled = rows[1]
    assert rolled["actor_key_id"] is None and rolled["actor_tenant"] == "system:eval_sampler"
    assert rolled["before"]["share"] == 30.0 and rolled["after"]["share"] == 0.0
    assert rolled["after"]["check"]["decision"] == "regression" and audit.verify(rows, setup["a"]["tenant"]).ok
    again = client.post(f"{base}/{rollout['id']}/advance", json={"share": 50}, headers=setup["a"]["admin"])
    assert again.status_code == 400 and again.json()["error"]["param"] == "rollout_id"


def test_a_better_candidate_keeps_running_then_completes_and_the_label_moves(
        client: TestClient, settings: Settings, setup: Any, conn: Any) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    rollout = _start(client, setup, share=10, min_samples=5, margin=0.1)
    base = f"/v1/admin/tenants/{setup['a']['tenant']}/prompts/{setup['name']}/rollouts/{rollout['id']}"
    early = client.post(f"{base}/complete", json={}, headers=setup["a"]["admin"])
    assert early.status_code == 400 and early.json()["error"]["param"] == "force"  # no samples yet
    _samples(conn, setup, rollout["id"], good_version=2)

    result = _sample(settings, conn, setup, since)
    [check] = [r for r in result.rollouts if r["rollout_id"] == rollout["id"]]
    assert (check["action"], check["decision"]) == ("none", "ok")
    r = client.post(f"{base}/advance", json={"share": 60}, headers=setup["a"]["admin"])
    assert r.status_code == 200 and (r.json()["state"], r.json()["share"]) == ("active", 60.0)
    assert r.json()["last_check"]["decision"] == "ok"

    r = client.post(f"{base}/complete", json={}, headers=setup["a"]["admin"])
    assert r.status_code == 200 and r.json()["state"] == "completed", r.text
    assert {_ask(client, setup, f"u{i}")["version"] for i in range(8)} == {2}  # the tenant's label serves v2
    assert {_ask(client, setup, f"u{i}", side="b")["version"] for i in range(4)} == {1}  # B's is the global one
    actions = [(r["action"], r["after"].get("share")) for r in _rows(setup)]
    assert actions == [("rollout.start", 10.0), ("rollout.advance", 60.0), ("rollout.complete", 60.0)]
    assert _rows(setup)[-1]["after"]["label_version"] == 2


def test_bad_input_is_a_400_naming_the_field(client: TestClient, setup: Any) -> None:
    a = setup["a"]
    base = f"/v1/admin/tenants/{a['tenant']}/prompts/{setup['name']}/rollouts"
    cases = [({"version": 2, "share": 150}, 400, "share"), ({"version": 2, "share": 10, "margin": 2}, 400, "margin"),
             ({"version": 2, "share": 10, "sticky_by": "ip"}, 400, "sticky_by"),
             ({"version": 2, "share": 10, "metric": "vibes"}, 400, "metric"),
             ({"version": 2, "share": 10, "colour": "red"}, 400, "colour"), ({"share": 10}, 400, "version"),
             ({"version": 1, "share": 10}, 400, "version"),  # the label serves v1 already
             ({"version": 9, "share": 10}, 404, "version"),
             ({"version": 2, "share": 10, "label": "nolabel"}, 404, "label")]
    for body, status, param in cases:
        r = client.post(base, json=body, headers=a["admin"])
        assert (r.status_code, r.json()["error"]["param"]) == (status, param), (body, r.text)
    first = _start(client, setup, share=10)
    r = client.post(base, json={"version": 2, "share": 20}, headers=a["admin"])
    assert r.status_code == 400 and r.json()["error"]["param"] == "label"  # one active rollout per label
    r = client.post("/v1/chat/completions", headers=a["user"],
                    json={"model": "fast", "messages": [{"role": "user", "content": "hi"}],
                          "stratus": {"prompt": setup["name"], "conversation_id": "has space"}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "conversation_id"
    r = client.delete(f"{base}/{first['id']}", params={"reason": "wrong candidate"}, headers=a["admin"])
    assert r.status_code == 200 and r.json()["state"] == "rolled_back" and "wrong candidate" in r.json()["reason"]
    assert client.post(base, headers=a["user"], json={"version": 2, "share": 1}).status_code == 403


def test_a_conversation_stays_on_one_version_and_a_protected_label_needs_a_second_key(
        client: TestClient, settings: Settings, setup: Any, conn: Any) -> None:
    a = setup["a"]
    tenant = a["tenant"]
    client.put(f"/v1/admin/tenants/{tenant}/approvals", json={"protected_labels": ["production"]}, headers=a["admin"])
    rollout = _start(client, setup, share=50, min_samples=5)  # sticky by conversation, then user, then key
    picks = {_ask(client, setup, f"u{i}", conversation_id="conv-7")["version"] for i in range(10)}
    assert len(picks) == 1  # ten users, one conversation: one version

    base = f"/v1/admin/tenants/{tenant}/prompts/{setup['name']}/rollouts/{rollout['id']}"
    # Forcing cannot stand in for evidence on a protected label: the request's gate would not pass
    r = client.post(f"{base}/complete", json={"force": True}, headers=a["admin"])
    assert r.status_code == 400 and r.json()["error"]["param"] == "eval_gate.passed"
    since = datetime.now(UTC) - timedelta(minutes=1)
    _samples(conn, setup, rollout["id"], good_version=2)
    _sample(settings, conn, setup, since)  # scored: the candidate is ahead
    r = client.post(f"{base}/complete", json={"eval_gate": {"suite": "chat"}}, headers=a["admin"])
    assert r.status_code == 202, r.text
    request = r.json()["promotion_request"]
    assert r.json()["state"] == "active" and request["status"] == "pending" and request["version"] == 2
    assert request["eval_gate"]["rollout_id"] == rollout["id"] and request["eval_gate"]["suite"] == "chat"

    second = auth(key_for(setup["url"], tenant, scopes=["admin"]))
    r = client.post(f"/v1/admin/tenants/{tenant}/promotions/{request['id']}/approve", json={}, headers=second)
    assert r.status_code == 200, r.text
    # The next sampler run sees the label at the candidate and closes the rollout
    result = _sample(settings, conn, setup, since)
    assert [r["action"] for r in result.rollouts if r["rollout_id"] == rollout["id"]] == ["completed"]
    actions = [r["action"] for r in _rows(setup)]
    assert actions[-4:] == ["rollout.start", "promotion.request", "promotion.approve", "rollout.complete"]


def test_the_generate_task_splits_the_workflow_path_by_the_sticky_keys_it_carries(client: TestClient,
                                                                                   setup: Any) -> None:
    from tests.conftest import load_function_app

    rollout = _start(client, setup, share=50, sticky_by="user")
    generate = load_function_app("generate")

    def version(sticky: dict[str, str] | None) -> tuple[int, str | None]:
        event = {"request_id": f"req-{uuid.uuid4().hex}", "tenant_id": setup["a"]["tenant"], "mode": "chat",
                 "messages": [{"role": "user", "content": "What is a rollout?"}], "model": "fast",
                 "prompt": setup["name"], **({"sticky": sticky} if sticky is not None else {})}
        out = generate.handler(event, None)["prompt"]
        return out["version"], out["rollout_id"]

    for user in (f"w{i}" for i in range(12)):
        expected = 2 if on_candidate(rollout["id"], 50, f"user:{user}") else 1
        assert version({"user": user, "key": "k"}) == (expected, rollout["id"])
    assert version(None) == (1, None)  # no sticky keys: the label's version, outside the rollout


def test_a_label_that_reached_the_candidate_another_way_completes_without_evidence(client: TestClient,
                                                                                   setup: Any) -> None:
    from stratus.prompts.registry import promote

    rollout = _start(client, setup, share=5)
    with psycopg.connect(setup["url"]) as owner:  # an operator moves the global label to v2 meanwhile
        promote(owner, setup["name"], 2, "production")
        owner.commit()
    base = f"/v1/admin/tenants/{setup['a']['tenant']}/prompts/{setup['name']}/rollouts/{rollout['id']}"
    r = client.post(f"{base}/complete", json={}, headers=setup["a"]["admin"])  # no samples, no force
    assert r.status_code == 200 and r.json()["state"] == "completed", r.text
    assert r.json()["reason"] == "label 'production' already serves v2"


def _protected_request(client: TestClient, settings: Settings, setup: Any, conn: Any
                       ) -> tuple[dict[str, Any], dict[str, Any], str, datetime]:
    """A rollout on a protected label whose candidate scored ahead, completed into a pending promotion
    request: (the rollout, the request, the rollout's URL, the sampler window's start)."""
    tenant = setup["a"]["tenant"]
    client.put(f"/v1/admin/tenants/{tenant}/approvals", json={"protected_labels": ["production"]},
               headers=setup["a"]["admin"])
    rollout = _start(client, setup, share=50, min_samples=5)
    base = f"/v1/admin/tenants/{tenant}/prompts/{setup['name']}/rollouts/{rollout['id']}"
    since = datetime.now(UTC) - timedelta(minutes=1)
    _samples(conn, setup, rollout["id"], good_version=2)
    _sample(settings, conn, setup, since)
    r = client.post(f"{base}/complete", json={}, headers=setup["a"]["admin"])
    assert r.status_code == 202, r.text
    return rollout, r.json()["promotion_request"], base, since


def _promotions(client: TestClient, setup: Any, status: str) -> list[dict[str, Any]]:
    tenant = setup["a"]["tenant"]
    r = client.get(f"/v1/admin/tenants/{tenant}/promotions", params={"status": status}, headers=setup["a"]["admin"])
    return list(r.json()["data"])


def test_a_rollback_by_the_sampler_rejects_the_rollouts_pending_promotion_request(
        client: TestClient, settings: Settings, setup: Any, conn: Any) -> None:
    rollout, request, base, since = _protected_request(client, settings, setup, conn)
    # When the candidate then regresses on later traffic, the sampler rolls the rollout back
    _samples(conn, setup, rollout["id"], good_version=1, count=24, batch="late")
    result = _sample(settings, conn, setup, since)
    assert [r["action"] for r in result.rollouts if r["rollout_id"] == rollout["id"]] == ["rolled_back"]

    # Then its request is rejected by the system, audited, and a second key can no longer approve it
    [closed] = [p for p in _promotions(client, setup, "rejected") if p["id"] == request["id"]]
    assert closed["decided_by"] == "system:rollout_ended" and closed["reason"].startswith(
        f"rollout {rollout['id']} rolled_back: regression")
    assert _promotions(client, setup, "pending") == []
    rows = _rows(setup)
    assert [(r["action"], r["actor_tenant"]) for r in rows[-2:]] == [
        ("promotion.reject", "system:eval_sampler"), ("rollout.rollback", "system:eval_sampler")]
    assert rows[-2]["target"] == request["id"] and audit.verify(rows, setup["a"]["tenant"]).ok
    tenant = setup["a"]["tenant"]
    second = auth(key_for(setup["url"], tenant, scopes=["admin"]))
    r = client.post(f"/v1/admin/tenants/{tenant}/promotions/{request['id']}/approve", json={}, headers=second)
    assert r.status_code == 400 and r.json()["error"]["param"] == "request_id"
    assert {_ask(client, setup, f"u{i}")["version"] for i in range(6)} == {1}  # the label never moved


def test_an_aborted_rollouts_request_is_rejected_and_a_stale_one_cannot_be_approved(
        client: TestClient, settings: Settings, setup: Any, conn: Any) -> None:
    rollout, request, base, _ = _protected_request(client, settings, setup, conn)
    tenant = setup["a"]["tenant"]
    r = client.delete(base, params={"reason": "bad tone"}, headers=setup["a"]["admin"])
    assert r.status_code == 200 and r.json()["state"] == "rolled_back"
    [closed] = [p for p in _promotions(client, setup, "rejected") if p["id"] == request["id"]]
    assert closed["decided_by"] == "system:rollout_ended" and "bad tone" in closed["reason"]
    assert [r["action"] for r in _rows(setup)[-2:]] == ["promotion.reject", "rollout.abort"]

    # A request left pending by a rollout that ended without closing it (a row from before the fix)
    with psycopg.connect(setup["url"]) as owner:
        owner.execute("UPDATE promotion_requests SET status = 'pending', decided_by = NULL, decided_at = NULL,"
                      " reason = NULL WHERE id = %s", [request["id"]])
        owner.commit()
    second = auth(key_for(setup["url"], tenant, scopes=["admin"]))
    r = client.post(f"/v1/admin/tenants/{tenant}/promotions/{request['id']}/approve", json={}, headers=second)
    assert r.status_code == 400 and r.json()["error"]["param"] == "eval_gate.rollout_id", r.text
    assert "rolled_back" in r.json()["error"]["message"]
    assert {_ask(client, setup, f"u{i}")["version"] for i in range(6)} == {1}
    r = client.post(f"/v1/admin/tenants/{tenant}/promotions/{request['id']}/reject", json={}, headers=second)
    assert r.status_code == 200 and r.json()["status"] == "rejected"  # clearing it away stays possible


def test_a_label_that_reached_the_candidate_completes_even_when_later_samples_regress(
        client: TestClient, settings: Settings, setup: Any, conn: Any) -> None:
    rollout, request, base, since = _protected_request(client, settings, setup, conn)
    tenant = setup["a"]["tenant"]
    second = auth(key_for(setup["url"], tenant, scopes=["admin"]))
    r = client.post(f"/v1/admin/tenants/{tenant}/promotions/{request['id']}/approve", json={}, headers=second)
    assert r.status_code == 200, r.text
    _samples(conn, setup, rollout["id"], good_version=1, count=24, batch="late")  # scored before the sampler ran

    result = _sample(settings, conn, setup, since)
    [check] = [r for r in result.rollouts if r["rollout_id"] == rollout["id"]]
    assert (check["action"], check["decision"]) == ("completed", "regression")
    shown = client.get(base, headers=setup["a"]["admin"]).json()
    assert (shown["state"], shown["share"]) == ("completed", 50.0)
    assert {_ask(client, setup, f"u{i}")["version"] for i in range(6)} == {2}


def test_completing_a_protected_label_again_returns_the_pending_request(
        client: TestClient, settings: Settings, setup: Any, conn: Any) -> None:
    rollout, request, base, _ = _protected_request(client, settings, setup, conn)
    audited = len(_rows(setup))
    r = client.post(f"{base}/complete", json={}, headers=setup["a"]["admin"])
    assert r.status_code == 202 and r.json()["promotion_request"]["id"] == request["id"]
    assert [p["id"] for p in _promotions(client, setup, "pending")] == [request["id"]]
    assert len(_rows(setup)) == audited  # nothing changed, nothing audited


def test_a_sampler_check_keeps_updated_at_and_an_unknown_tenant_is_a_404(
        client: TestClient, settings: Settings, setup: Any, conn: Any) -> None:
    rollout = _start(client, setup, share=10, min_samples=50)

    def stamps() -> tuple[Any, Any]:
        with psycopg.connect(setup["url"]) as owner:
            row = owner.execute("SELECT updated_at, last_check FROM prompt_rollouts WHERE id = %s",
                                [rollout["id"]]).fetchone()
        assert row is not None
        return row[0], row[1]

    updated, _ = stamps()
    _sample(settings, conn, setup, datetime.now(UTC) - timedelta(seconds=1))
    after, last_check = stamps()
    assert last_check["decision"] == "insufficient" and after == updated

    r = client.get(f"/v1/admin/tenants/no-such-tenant/prompts/{setup['name']}/rollouts", headers=setup["a"]["admin"])
    assert r.status_code == 404 and r.json()["error"]["param"] == "tenant_id", r.text
