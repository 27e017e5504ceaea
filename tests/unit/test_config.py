"""Settings fail fast, and the message names the environment variable to fix."""

from __future__ import annotations

import pytest

from stratus.config import ConfigError, load_settings


def test_defaults_are_valid_in_local_mode() -> None:
    settings = load_settings(env="local")
    assert settings.env == "local"
    assert settings.chunk_overlap_tokens < settings.chunk_max_tokens


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="STRATUS_CHUNK_MAX_TOKENS"):
        load_settings(chunk_max_tokens=10_000)


def test_an_unknown_choice_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="STRATUS_ENV"):
        load_settings(env="staging")


def test_outside_local_mode_the_resources_are_required() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL or STRATUS_DATABASE_SECRET_ARN.*STRATUS_DOCUMENTS_BUCKET"):
        load_settings(env="prod", database_url=None, database_secret_arn=None, documents_bucket=None)


def test_overlap_must_be_smaller_than_the_budget() -> None:
    with pytest.raises(ConfigError, match="STRATUS_CHUNK_OVERLAP_TOKENS"):
        load_settings(chunk_max_tokens=64, chunk_overlap_tokens=64)


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_RETRIEVAL_K", "7")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    settings = load_settings()
    assert settings.retrieval_k == 7
    assert settings.database_url == "postgresql://u@h/db"


def test_a_malformed_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATUS_RETRIEVAL_K", "many")
    with pytest.raises(ConfigError, match="STRATUS_RETRIEVAL_K"):
        load_settings()
