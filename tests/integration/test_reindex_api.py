"""A re-embedding through the admin API and the ingest queue (moto SQS, the ingest handler): started by
POST, carried out as a chain of queue messages that survives an invocation running out of time, switched,
rolled back; bad requests are 400s naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from moto import mock_aws

from stratus.aws.clients import client, reset_clients
from stratus.config import load_settings, reset_settings
from stratus.reindex import queue as reindex_queue
from tests.conftest import create_tenant, load_function_app
from tests.integration.gateway_support import admin_auth
from tests.integration.test_reindex import BASE, TOPICS, _ingest
from tests.support import second_model

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, Any, str]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(), second_model.registered():
        reset_clients()
        url = client("sqs").create_queue(QueueName="stratus-ingest")["QueueUrl"]
        monkeypatch.setenv("STRATUS_INGEST_QUEUE_URL", url)
        reset_settings()
        from stratus.gateway.app import create_app

        with TestClient(create_app()) as c:
            yield c, client("sqs"), url
    reset_clients()
    monkeypatch.undo()
    reset_settings()


def _deliver(app: Any, sqs: Any, url: str, remaining_ms: list[int]) -> dict[str, Any]:
    """The queue's next message through the ingest handler, as its SQS event source delivers it."""
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
    assert len(got) == 1, got
    event = json.loads((ROOT / "events" / "ingest_reindex.json").read_text())
    record = event["Records"][0]
    record.update(messageId=got[0]["MessageId"], receiptHandle=got[0]["ReceiptHandle"], body=got[0]["Body"])
    ticks = iter(remaining_ms)
    context = SimpleNamespace(function_name="ingest", memory_limit_in_mb=2048, aws_request_id="req-23",
                              invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ingest",
                              get_remaining_time_in_millis=lambda: next(ticks, 0))
    response = app.handler(event, context)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
    return response


def test_admin_api_runs_a_reindex_through_the_queue(stack, pg_url: str) -> None:
    c, sqs, url = stack
    admin = admin_auth(pg_url)
    tenant = create_tenant(pg_url, "rx")
    settings = load_settings()
    for i, text in enumerate(TOPICS[:4]):
        _ingest(tenant, i, text, settings)
    path = f"/v1/admin/tenants/{tenant}/reindex"
    r = c.get(path, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["query_model"] == BASE and r.json()["status"] == "idle"

    # Given a POST: the target is recorded and the chain's first message queued
    r = c.post(path, json={"model": second_model.NAME}, headers=admin)
    assert r.status_code == 202, r.text
    assert r.json()["dispatched"] is True and r.json()["status"] == "running" and r.json()["total"] == 4

    # When the first invocation has time for one batch only: it embeds and queues the next part
    app = load_function_app("ingest")
    assert _deliver(app, sqs, url, [reindex_queue.RESERVE_MS + 1]) == {"batchItemFailures": []}
    mid = c.get(path, headers=admin).json()
    assert (mid["status"], mid["embedded"], mid["query_model"]) == ("running", 4, BASE)
    # Then the next one switches the tenant, and the chain ends
    assert _deliver(app, sqs, url, [10**6] * 5) == {"batchItemFailures": []}
    done = c.get(path, headers=admin).json()
    assert (done["query_model"], done["previous_model"], done["target_model"]) == (second_model.NAME, BASE, None)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)

    # And back, at once, by rollback; dropping the previous model waits out the query-model caches
    r = c.post(path, json={"action": "rollback"}, headers=admin)
    assert r.status_code == 200 and r.json()["query_model"] == BASE
    r = c.post(path, json={"action": "drop_previous"}, headers=admin)
    assert r.status_code == 400 and r.json()["error"]["param"] == "drop_previous"


def test_bad_requests_name_the_field(stack, pg_url: str) -> None:
    c, _, _ = stack
    admin = admin_auth(pg_url)
    tenant = create_tenant(pg_url, "rx")
    path = f"/v1/admin/tenants/{tenant}/reindex"
    for body, param in (({"model": "no-such-model"}, "model"), ({"action": "start"}, "model"),
                        ({"model": BASE}, "model"), ({"action": "rollback"}, "rollback"),
                        ({"model": "bad model!"}, "model"), ({"action": "upgrade"}, "action")):
        r = c.post(path, json=body, headers=admin)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param, (body, r.json())
    assert c.get("/v1/admin/tenants/no-such-tenant/reindex", headers=admin).status_code == 404
    assert c.post("/v1/admin/tenants/no-such-tenant/reindex", json={"model": second_model.NAME},
                  headers=admin).status_code == 404
