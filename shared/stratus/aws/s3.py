"""S3 in domain terms: the current state of an object, or NotFound / TooLarge / TransientError."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from stratus.aws.clients import client
from stratus.errors import NotFound, TooLarge, TransientError

T = TypeVar("T")

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchVersion"}


@dataclass(frozen=True)
class ObjectHead:
    bucket: str
    key: str
    etag: str | None
    last_modified: datetime | None
    size: int
    content_type: str | None
    version_id: str | None


@dataclass(frozen=True)
class StoredObject:
    head: ObjectHead
    data: bytes


def _head(bucket: str, key: str, r: dict[str, Any]) -> ObjectHead:
    return ObjectHead(
        bucket=bucket, key=key, etag=(r.get("ETag") or "").strip('"') or None,
        last_modified=r.get("LastModified"), size=int(r.get("ContentLength") or 0),
        content_type=r.get("ContentType"), version_id=r.get("VersionId"),
    )


def _call(what: str, fn: Callable[[], T]) -> T:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn()
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            raise NotFound(f"{what}: no such object", field="key") from None
        # Access denied, throttling, 5xx: an operator or time can fix these, so the message is retried
        # (and lands in the DLQ if it never succeeds) rather than recorded as a document problem.
        raise TransientError(f"{what}: S3 error {code}") from err
    except BotoCoreError as err:  # connection errors, timeouts, incomplete reads
        raise TransientError(f"{what}: {err}") from err


def head_object(bucket: str, key: str) -> ObjectHead:
    """The object's current metadata; NotFound if it does not exist."""
    r = _call(f"HEAD s3://{bucket}/{key}", lambda: client("s3").head_object(Bucket=bucket, Key=key))
    return _head(bucket, key, r)


def get_object(bucket: str, key: str, *, max_bytes: int | None = None) -> StoredObject:
    """The object's current content and metadata; TooLarge (without reading the body) past `max_bytes`."""
    where = f"GET s3://{bucket}/{key}"
    r = _call(where, lambda: client("s3").get_object(Bucket=bucket, Key=key))
    head = _head(bucket, key, r)
    body = r["Body"]
    try:
        if max_bytes is not None and head.size > max_bytes:
            raise TooLarge(f"document is {head.size} bytes; the limit is {max_bytes}", field="size")
        data = _call(where, body.read)
    finally:
        body.close()
    return StoredObject(head, data)


@dataclass(frozen=True)
class PresignedUpload:
    url: str
    method: str
    headers: dict[str, str]  # what the upload must send: they are part of the signature
    expires_in: int


def presign_put(bucket: str, key: str, *, content_type: str, size_bytes: int | None = None,
                expires_in: int = 900) -> PresignedUpload:
    """A URL that lets its holder PUT exactly one object, `key`, for `expires_in` seconds.

    Signed with SigV4 (botocore would presign with SigV2 in us-east-1), so the Content-Type, and the
    Content-Length when `size_bytes` is given, are part of the signature: S3 refuses an upload of
    another type or size. Presigning is local computation; it needs no call to S3.
    """
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "ContentType": content_type}
    if size_bytes is not None:
        params["ContentLength"] = size_bytes
    s3v4 = client("s3", signature_version="s3v4")
    url = _call(f"presign PUT s3://{bucket}/{key}", lambda: s3v4.generate_presigned_url(
        "put_object", Params=params, ExpiresIn=expires_in, HttpMethod="PUT"))
    return PresignedUpload(url=url, method="PUT", headers={"Content-Type": content_type}, expires_in=expires_in)


def delete_object(bucket: str, key: str) -> None:
    """Delete (or, in a versioned bucket, hide behind a delete marker) one object; absent is fine."""
    _call(f"DELETE s3://{bucket}/{key}", lambda: client("s3").delete_object(Bucket=bucket, Key=key))
