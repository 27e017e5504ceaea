"""The audit rows' source address: the TCP peer locally, the request context's sourceIp on Lambda (where
the peer is the Web Adapter), never a client's own request-context header outside Lambda."""

from __future__ import annotations

import json

import pytest
from starlette.requests import Request

from stratus.gateway.auditing import source_address


def _request(context: object | None, peer: str = "127.0.0.1") -> Request:
    headers = [] if context is None else [(b"x-amzn-request-context", json.dumps(context).encode())]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (peer, 5000)})


def test_locally_the_peer_and_never_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert source_address(_request({"http": {"sourceIp": "6.6.6.6"}}, peer="10.1.2.3")) == "10.1.2.3"


def test_on_lambda_the_request_contexts_source_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "stratus-gateway")
    assert source_address(_request({"http": {"sourceIp": "203.0.113.7"}})) == "203.0.113.7"  # HTTP API, URL
    assert source_address(_request({"identity": {"sourceIp": "198.51.100.2"}})) == "198.51.100.2"  # REST API
    assert source_address(_request(None)) == "127.0.0.1"  # no context (an ALB): the peer
    assert source_address(_request(["not", "an", "object"])) == "127.0.0.1"
