"""The local stack says so when its embedded PostgreSQL dies under it (and stays quiet on a deliberate stop)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import uuid

import pytest

from tests.conftest import ROOT


def test_a_dead_embedded_server_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    from stratus_tools.local.postgres import start_embedded

    folder = ROOT / ".stratus" / f"test-pg-watch-{uuid.uuid4().hex[:8]}"
    pg = start_embedded(folder, delete_on_stop=True)
    died = threading.Event()
    try:
        assert pg.alive()
        caplog.set_level(logging.ERROR, logger="stratus_tools.local.postgres")
        pg.watch(died.set, interval_s=0.1)
        os.kill(pg._server.get_pid(), signal.SIGKILL)  # type: ignore[attr-defined]
        assert died.wait(10)
        assert not pg.alive()
        assert any("stopped unexpectedly" in r.getMessage() for r in caplog.records)
    finally:
        pg.stop()  # a dead server stops without an error (the local stack's stop() must not fail)
        shutil.rmtree(folder, ignore_errors=True)
