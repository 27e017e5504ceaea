"""S3 event notifications (as delivered in SQS message bodies) -> typed object events.

A body that is not an S3 notification raises InvalidInput: the message fails and, after the queue's
retries, lands in the DLQ. `s3:TestEvent` (sent once when a notification is configured) yields
nothing. Keys arrive URL-encoded (`/` as `%2F`, space as `+`) and are decoded here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from stratus.errors import InvalidInput
from stratus.tenants import TENANT_ID

KEY_PREFIX = "tenants/"


@dataclass(frozen=True)
class ObjectEvent:
    kind: Literal["created", "removed"]
    bucket: str
    key: str  # the full, decoded object key
    event_name: str
    event_time: datetime | None = None
    etag: str | None = None
    size: int | None = None
    version_id: str | None = None
    sequencer: str | None = None


@dataclass(frozen=True)
class DocumentKey:
    tenant_id: str
    path: str  # below tenants/<tenant_id>/


def split_key(key: str) -> DocumentKey:
    """`tenants/<tenant_id>/<path>` -> its parts; InvalidInput for keys outside that layout."""
    if not key.startswith(KEY_PREFIX):
        raise InvalidInput(f"object key {key!r} is not under {KEY_PREFIX}<tenant_id>/", field="key")
    tenant_id, sep, path = key[len(KEY_PREFIX):].partition("/")
    if not TENANT_ID.match(tenant_id):
        raise InvalidInput(f"object key {key!r} has an invalid tenant id {tenant_id!r}", field="key")
    if not sep or not path or path.endswith("/"):
        raise InvalidInput(f"object key {key!r} names no document (empty path or a folder)", field="key")
    return DocumentKey(tenant_id, path)


def parse_notification(body: str | dict[str, Any]) -> list[ObjectEvent]:
    """The object events in one message body (also accepts an SNS envelope around the notification)."""
    message = _json(body) if isinstance(body, str) else body
    if not isinstance(message, dict):
        raise InvalidInput("message body is not a JSON object", field="body")
    if message.get("Type") == "Notification" and isinstance(message.get("Message"), str):
        message = _json(message["Message"])
        if not isinstance(message, dict):
            raise InvalidInput("SNS message is not a JSON object", field="body.Message")
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise InvalidInput("message body has no Records list (not an S3 event notification)", field="Records")
    return [e for i, r in enumerate(records) if (e := _record(r, i)) is not None]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError) as err:
        raise InvalidInput(f"message body is not JSON: {err}", field="body") from None


def _record(record: Any, i: int) -> ObjectEvent | None:
    where = f"Records[{i}]"
    if not isinstance(record, dict):
        raise InvalidInput(f"{where} is not an object", field=where)
    name = record.get("eventName")
    if not isinstance(name, str):
        raise InvalidInput(f"{where}.eventName is missing", field=f"{where}.eventName")
    name = name.removeprefix("s3:")
    if name.startswith("ObjectCreated:"):
        kind: Literal["created", "removed"] = "created"
    elif name.startswith(("ObjectRemoved:", "LifecycleExpiration:")):
        kind = "removed"
    else:
        return None  # tagging, ACL, restore... change nothing we index
    s3 = record.get("s3")
    bucket = s3.get("bucket", {}).get("name") if isinstance(s3, dict) else None
    obj = s3.get("object", {}) if isinstance(s3, dict) else None
    raw_key = obj.get("key") if isinstance(obj, dict) else None
    if not isinstance(bucket, str) or not bucket:
        raise InvalidInput(f"{where}.s3.bucket.name is missing", field=f"{where}.s3.bucket.name")
    if not isinstance(raw_key, str) or not raw_key:
        raise InvalidInput(f"{where}.s3.object.key is missing", field=f"{where}.s3.object.key")
    assert isinstance(obj, dict)
    return ObjectEvent(
        kind=kind, bucket=bucket, key=unquote_plus(raw_key), event_name=name,
        event_time=_time(record.get("eventTime")), etag=obj.get("eTag") or None,
        size=obj.get("size") if isinstance(obj.get("size"), int) else None,
        version_id=obj.get("versionId") or None, sequencer=obj.get("sequencer") or None,
    )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
