"""Fixtures the gateway's integration modules share: a loopback OpenAI upstream, the app in-process and
behind uvicorn.

A module that needs another upstream, or no server, defines its own fixture of that name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from stratus.config import Settings
from stratus_tools.local.server import GatewayServer
from tests.support.upstreams import OpenAIUpstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[OpenAIUpstream]:
    """The module's loopback OpenAI server (answers "Echo: <last user text>")."""
    with OpenAIUpstream() as up:
        yield up


@pytest.fixture
def up(upstream: OpenAIUpstream) -> OpenAIUpstream:
    """The upstream with its recorded requests and injected faults cleared."""
    upstream.clear()
    return upstream


@pytest.fixture(scope="module")
def client(pg_url: str) -> Iterator[TestClient]:
    """The gateway app with the environment's settings, in-process (a module running a stack has its own)."""
    from stratus.gateway.app import create_app

    with TestClient(create_app()) as c:
        yield c


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[GatewayServer]:
    """The gateway app for the module's `settings`, served by uvicorn."""
    from stratus.gateway.app import create_app

    with GatewayServer(create_app(settings)) as srv:
        yield srv
