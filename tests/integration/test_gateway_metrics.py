"""With `emit_metrics` on (as the template sets it), each answered request leaves its spend and latency as
CloudWatch EMF log lines after the response: the template's spend and p99 latency alarms read them. Off
(the local default), nothing is printed: stdout belongs to the commands."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from stratus.config import load_settings
from tests.integration.gateway_support import auth, tenant_with_key


def _emf(out: str) -> list[dict]:
    return [doc for doc in (json.loads(line) for line in out.splitlines() if line.startswith("{"))
            if "_aws" in doc]


@pytest.mark.parametrize("on", [True, False])
def test_an_answered_request_emits_spend_and_latency(pg_url: str, capsys: pytest.CaptureFixture[str],
                                                     on: bool) -> None:
    from stratus.gateway.app import create_app

    _, key = tenant_with_key(pg_url, "emf")
    settings = load_settings(database_url=pg_url, emit_metrics=on, cache_enabled=False)
    with TestClient(create_app(settings)) as client:
        capsys.readouterr()
        r = client.post("/v1/chat/completions", headers=auth(key),
                        json={"model": "fast", "messages": [{"role": "user", "content": "Say hello."}]})
        assert r.status_code == 200, r.text
    docs = _emf(capsys.readouterr().out)
    if not on:
        assert docs == []
        return
    by_name = {d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"]: d for d in docs}
    assert set(by_name) == {"SpendUsd", "LatencyMs"}
    assert by_name["LatencyMs"]["LatencyMs"][0] > 0 and by_name["LatencyMs"]["service"] == "gateway"
    assert by_name["LatencyMs"]["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] == "Milliseconds"
    assert by_name["SpendUsd"]["SpendUsd"] == [0.0]  # the offline provider costs nothing
