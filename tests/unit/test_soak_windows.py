"""How the soak run (bench/soak.py) judges a provider error answered inside fault windows."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import GRACE_S, Sample, Soak

pytestmark = pytest.mark.unit


@pytest.fixture
def soak(tmp_path: Path) -> Soak:
    # Given a database restart from t=100 to t=102 (then its grace) and a provider 5xx from t=105 to t=107
    s = Soak(1, tmp_path)
    s._window("db_restart", 100.0, 102.0)
    s._window("provider_5xx", 105.0, 107.0)
    return s


def _502(start: float, end: float) -> Sample:
    return Sample("chat", "beta", 502, "all_deployments_failed", start, end)


def test_a_provider_error_during_the_databases_grace_and_a_provider_fault_is_the_providers(soak: Soak) -> None:
    assert 102.0 < 105.5 < 102.0 + GRACE_S  # the request falls in the database window's grace only
    assert soak._provider_answer(_502(105.5, 106.0))


def test_a_provider_error_while_the_database_is_down_is_not_excused(soak: Soak) -> None:
    assert not soak._provider_answer(_502(101.0, 101.5))  # no provider fault at all
    assert not soak._provider_answer(_502(101.5, 105.2))  # the provider fault began, but the outage is in it too


def test_a_provider_error_outside_any_provider_fault_is_not_excused(soak: Soak) -> None:
    assert not soak._provider_answer(_502(103.0, 104.0))  # only the database's grace
