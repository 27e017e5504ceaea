"""S3 notifications in SQS bodies -> object events; tenant keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stratus.errors import InvalidInput
from stratus.ingest.events import DocumentKey, parse_notification, split_key

EVENTS = Path(__file__).resolve().parents[2] / "events"


def body(name: str, index: int = 0) -> str:
    return json.loads((EVENTS / name).read_text())["Records"][index]["body"]


def notification(key: str, name: str = "ObjectCreated:Put", **obj: object) -> dict:
    return {
        "Records": [
            {
                "eventName": name,
                "eventTime": "2025-03-04T05:06:07.890Z",
                "s3": {"bucket": {"name": "docs"}, "object": {"key": key, **obj}},
            }
        ]
    }


def test_put_event_from_the_sample_file_decodes_the_key() -> None:
    [event] = parse_notification(body("ingest_put.json"))
    assert event.kind == "created" and event.event_name == "ObjectCreated:Put"
    assert event.bucket == "stratus-documents-local"
    assert event.key == "tenants/acme/handbook/getting started.md"
    assert event.etag and event.size == 1024
    assert event.event_time == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_delete_event_from_the_sample_file() -> None:
    [event] = parse_notification(body("ingest_delete.json"))
    assert (event.kind, event.key) == ("removed", "tenants/acme/handbook/getting started.md")


def test_test_event_yields_nothing() -> None:
    assert parse_notification(body("ingest_test_event.json")) == []


def test_poison_message_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="not JSON"):
        parse_notification(body("ingest_batch_with_poison.json", 1))


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("tenants%2Facme%2Fa+b.md", "tenants/acme/a b.md"),
        ("tenants/acme/r%C3%A9sum%C3%A9%2B1.pdf", "tenants/acme/résumé+1.pdf"),
        ("tenants/acme/100%25.txt", "tenants/acme/100%.txt"),
    ],
)
def test_keys_are_url_decoded(raw: str, decoded: str) -> None:
    assert parse_notification(notification(raw))[0].key == decoded


def test_event_kinds() -> None:
    kinds = [
        (name, [e.kind for e in parse_notification(notification("k", name))])
        for name in (
            "ObjectCreated:CompleteMultipartUpload",
            "ObjectRemoved:DeleteMarkerCreated",
            "LifecycleExpiration:Delete",
            "ObjectTagging:Put",
            "ObjectRestore:Completed",
        )
    ]
    assert kinds == [
        ("ObjectCreated:CompleteMultipartUpload", ["created"]),
        ("ObjectRemoved:DeleteMarkerCreated", ["removed"]),
        ("LifecycleExpiration:Delete", ["removed"]),
        ("ObjectTagging:Put", []),
        ("ObjectRestore:Completed", []),
    ]


def test_sns_envelope_is_unwrapped() -> None:
    wrapped = {"Type": "Notification", "Message": json.dumps(notification("tenants%2Fa%2Fx.md"))}
    assert parse_notification(json.dumps(wrapped))[0].key == "tenants/a/x.md"


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("[1, 2]", "body"),
        ('{"hello": "world"}', "Records"),
        ('{"Records": ["x"]}', "Records[0]"),
        ('{"Records": [{"s3": {}}]}', "Records[0].eventName"),
        (
            '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "k"}}}]}',
            "Records[0].s3.bucket.name",
        ),
        (
            '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]}',
            "Records[0].s3.object.key",
        ),
    ],
)
def test_malformed_notifications_name_the_field(message: str, field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_notification(message)
    assert err.value.field == field


def test_split_key() -> None:
    assert split_key("tenants/acme-co_1/docs/a b.md") == DocumentKey("acme-co_1", "docs/a b.md")


@pytest.mark.parametrize(
    "key",
    [
        "uploads/acme/a.md",
        "tenants/Acme/a.md",
        "tenants/-acme/a.md",
        "tenants/acme",
        "tenants/acme/",
        "tenants/acme/folder/",
        "tenants//a.md",
        f"tenants/{'a' * 64}/x.md",
        "tenants/ac.me/x.md",
    ],
)
def test_keys_outside_the_layout_are_refused(key: str) -> None:
    with pytest.raises(InvalidInput) as err:
        split_key(key)
    assert err.value.field == "key"
