"""Turning a provider's HTTP failure into the taxonomy of stratus/provider_errors.py, the same way for every
adapter (chat, embeddings, rerank).

The SDK-specific parts (which exception carries which status, body and headers) live in each adapter;
this module holds the rules they share: the order of classification, status -> error class, and the
retry-after headers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from stratus import provider_errors as e

ErrorTypes = tuple[type[Exception], ...]


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` as seconds or an HTTP date; None if absent."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    raw_ms = lower.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = lower.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def for_status(status: int, message: str, *, deployment: str, headers: Mapping[str, str] | None = None,
               context_length: bool = False) -> e.ProviderError:
    """The error for an HTTP failure. `context_length` is the provider-specific verdict that the prompt
    did not fit (each provider signals it differently)."""
    kw: dict[str, Any] = {"status": status, "deployment": deployment}
    if context_length:
        return e.ContextLengthExceeded(message, **kw)
    if status == 429:
        return e.RateLimited(message, retry_after=retry_after(headers), **kw)
    if status in (503, 529):
        return e.Overloaded(message, retry_after=retry_after(headers), **kw)
    if status >= 500:
        return e.ServerError(message, retry_after=retry_after(headers), **kw)
    if status == 408:
        return e.ProviderTimeout(message, **kw)
    if status in (401, 403):
        return e.AuthenticationFailed(message, **kw)
    return e.InvalidRequest(message, **kw)


def describe(body: object, fallback: str) -> str:
    """A short message from an error body (`error.message` or `message`), for logs and traces."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    if isinstance(body, str) and body:
        return body[:500]
    return fallback


def parse_arguments(arguments: str, *, field: str) -> dict[str, Any]:
    """A tool call's JSON arguments as an object (Anthropic and Bedrock want objects, OpenAI sends text)."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        raise e.InvalidRequest(f"{field}: tool call arguments are not valid JSON", field=field) from None
    if not isinstance(value, dict):
        raise e.InvalidRequest(f"{field}: tool call arguments must be a JSON object", field=field)
    return value


def malformed(deployment: str, what: str, status: int | None = 200) -> e.MalformedResponse:
    return e.MalformedResponse(f"{deployment}: malformed response: {what}", status=status, deployment=deployment)


def classify_sdk_error(err: Exception, name: str, *, timeout: ErrorTypes, connection: ErrorTypes,
                       specific: Callable[[Exception, str], e.ProviderError | None],
                       unparsable: ErrorTypes = (ValueError,)) -> e.ProviderError:
    """An adapter's failure as a ProviderError, in the order every adapter needs: already classified;
    a timeout (checked before `connection`: the SDKs' timeout errors are connection errors too); no
    connection; then the adapter's own `specific` rules (status errors, credentials; given the error and
    `name`), None when none applies; a body that does not parse; anything else, unclassified."""
    if isinstance(err, e.ProviderError):
        return err
    if isinstance(err, timeout):
        return e.ProviderTimeout(f"{name}: timed out", deployment=name)
    if isinstance(err, connection):
        return e.ProviderUnavailable(f"{name}: connection failed: {err}", deployment=name)
    found = specific(err, name)
    if found is not None:
        return found
    if isinstance(err, unparsable):  # JSON or an event stream that does not decode (a broken body or event)
        return malformed(name, f"body does not parse: {err}")
    return e.ProviderError(f"{name}: {type(err).__name__}: {err}", deployment=name)
