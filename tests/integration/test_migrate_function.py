"""The deploy-time migration function (the DatabaseMigrations custom resource): it migrates and publishes the
prompts on Create and Update, does nothing on Delete, and CloudFormation always gets exactly one answer, PUT
to the presigned ResponseURL (here a loopback server playing S3)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stratus.aws import custom_resource
from tests.conftest import load_function_app
from tests.integration.cfn_support import ResponseUrl

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def response_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[ResponseUrl]:
    monkeypatch.setattr(custom_resource, "send", functools.partial(custom_resource.send, backoff_s=0.01))
    server = ResponseUrl()
    yield server
    server.stop()


class _Context:
    function_name = "stratus-local-MigrateFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stratus-local-MigrateFunction"
    aws_request_id = "c0ffee00-0000-0000-0000-000000000000"
    log_stream_name = "2026/12/06/[$LATEST]0123456789abcdef"

    def __init__(self, remaining_ms: int = 900_000) -> None:
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def _app() -> Any:
    return load_function_app("migrate")


def _event(name: str, url: str) -> dict[str, Any]:
    return json.loads((ROOT / "events" / f"migrate_{name}.json").read_text()) | {"ResponseURL": url}


def test_create_migrates_publishes_the_prompts_and_answers_success(pg_url: str, response_url: ResponseUrl) -> None:
    event = _event("create", response_url.url)

    assert _app().handler(event, _Context()) is None

    (request,) = response_url.requests
    assert request["headers"].get("Content-Type") == ""  # the URL is presigned without a content type
    assert request["path"] == "/stack%7CDatabaseMigrations?X-Amz-Signature=x"
    answer = request["body"]
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    assert {k: answer[k] for k in ("StackId", "RequestId", "LogicalResourceId")} == {
        k: event[k] for k in ("StackId", "RequestId", "LogicalResourceId")}
    assert answer["PhysicalResourceId"] == "stratus-database-migrations"
    assert answer["Data"]["MigrationsApplied"] == "none"  # pg_url is migrated already: an update is a no-op
    assert int(answer["Data"]["PromptsPublished"]) >= 0
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT 1 FROM schema_migrations WHERE version = '0010_app_login'").fetchone()
        assert conn.execute("SELECT count(*) FROM prompt_versions").fetchone()[0] > 0


def test_delete_answers_success_without_touching_the_database(response_url: ResponseUrl,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import stratus.db.migrate

    monkeypatch.setattr(stratus.db.migrate, "migrate", lambda *a, **k: pytest.fail("Delete must not migrate"))
    _app().handler(_event("delete", response_url.url), _Context())

    (answer,) = response_url.answers
    assert (answer["Status"], answer["PhysicalResourceId"]) == ("SUCCESS", "stratus-database-migrations")


def test_a_failed_migration_answers_failed_with_the_error_and_the_log_stream(
        pg_url: str, response_url: ResponseUrl, monkeypatch: pytest.MonkeyPatch) -> None:
    import stratus.db.migrate

    def broken(url: str) -> list[str]:
        raise stratus.db.migrate.MigrationError("migration 0011_x changed after it was applied")

    monkeypatch.setattr(stratus.db.migrate, "migrate", broken)
    _app().handler(_event("create", response_url.url), _Context())

    (answer,) = response_url.answers
    assert answer["Status"] == "FAILED"
    assert "MigrationError: migration 0011_x changed" in answer["Reason"]
    assert _Context.log_stream_name in answer["Reason"]


def test_work_still_running_near_the_deadline_answers_failed_once(response_url: ResponseUrl) -> None:
    @custom_resource.custom_resource(physical_id="slow")
    def slow(event: dict[str, Any], context: Any) -> dict[str, str]:
        time.sleep(2.5)
        return {"Done": "yes"}

    # 11 s left: the deadline answer goes after about 1 s, while the work still runs.
    slow(_event("create", response_url.url), _Context(remaining_ms=11_000))

    (answer,) = response_url.answers
    assert answer["Status"] == "FAILED" and "timed out" in answer["Reason"]


def test_the_answer_is_retried_until_s3_takes_it(response_url: ResponseUrl) -> None:
    response_url.statuses = [503, 500]

    @custom_resource.custom_resource(physical_id="retried")
    def work(event: dict[str, Any], context: Any) -> dict[str, str]:
        return {"Answer": 42}  # type: ignore[dict-item]  # stringified for CloudFormation

    work(_event("create", response_url.url), _Context())

    assert [a["Status"] for a in response_url.answers] == ["SUCCESS"] * 3
    assert response_url.answers[-1]["Data"] == {"Answer": "42"}


def test_an_unknown_request_type_is_answered_failed(response_url: ResponseUrl) -> None:
    @custom_resource.custom_resource(physical_id="x")
    def work(event: dict[str, Any], context: Any) -> None:
        pytest.fail("not for an unknown request type")

    work(_event("create", response_url.url) | {"RequestType": "Replace"}, _Context())

    (answer,) = response_url.answers
    assert answer["Status"] == "FAILED" and "Replace" in answer["Reason"]
