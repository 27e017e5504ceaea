"""Provider failures, classified once by the adapters so the router can decide: retry, fall back, or stop.

- retryable: the same deployment may succeed if asked again (after `retry_after` when given).
- fallback: another deployment may succeed where this one failed.
A failure that is neither (e.g. a malformed request) stops the request: no other model will accept it.

Across a Lambda boundary an exception travels as its class name and `str(err)` only (the runtime's error
JSON: errorType, errorMessage, stackTrace). So `str()` of a provider error is its message plus, when there
is any, what the class name cannot say, as a trailer `[stratus {"last": ..., "retry_after": ..., "field": ...}]`
(`wire_fields`); `read_wire` splits it off again (stratus.gateway.errors, for a failed query workflow).
`.message` stays the plain message.
"""

from __future__ import annotations

import json
from typing import Any

from stratus.errors import StratusError

_WIRE = " [stratus "


class ProviderError(StratusError):
    code = "provider_error"
    retryable = False
    fallback = True

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 deployment: str | None = None, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.retry_after = retry_after
        self.deployment = deployment
        # Filled by the router: every attempt of the request (router.Attempt), for the trace. Typed loosely:
        # the router imports this module, so naming its class here would be an import cycle.
        self.attempts: list[Any] = []

    @property
    def kind(self) -> str:
        return self.code

    def wire_fields(self) -> dict[str, Any]:
        """What the API error needs beyond the class name and the message (see the module's docstring)."""
        out: dict[str, Any] = {}
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.field is not None:
            out["field"] = self.field
        return out

    def __str__(self) -> str:
        extra = self.wire_fields()
        return f"{self.message}{_WIRE}{json.dumps(extra, separators=(',', ':'))}]" if extra else self.message


class RateLimited(ProviderError):
    """429: honour retry-after, else back off; other deployments have their own limits."""

    code = "rate_limited"
    retryable = True


class Overloaded(ProviderError):
    """503 / Anthropic's 529: the provider is shedding load."""

    code = "overloaded"
    retryable = True


class ServerError(ProviderError):
    """Any other 5xx."""

    code = "server_error"
    retryable = True


class ProviderTimeout(ProviderError):
    code = "timeout"
    retryable = True


class ProviderUnavailable(ProviderError):
    """Connection refused or reset, DNS, TLS: nothing came back."""

    code = "connection_error"
    retryable = True


class MalformedResponse(ProviderError):
    """A 2xx whose body does not parse as the protocol says: never treated as an answer."""

    code = "malformed_response"
    retryable = True


class StreamInterrupted(ProviderError):
    """A stream ended or broke before its final event. Once text has reached the caller it cannot be
    taken back, so the router falls back only if nothing was emitted yet."""

    code = "stream_interrupted"
    retryable = True


class ContextLengthExceeded(ProviderError):
    """The prompt does not fit this model; a deployment with a larger window may take it."""

    code = "context_length_exceeded"
    retryable = False


class AuthenticationFailed(ProviderError):
    """401/403: this deployment's credentials are wrong; retrying cannot help, another deployment may."""

    code = "authentication_failed"
    retryable = False


class InvalidRequest(ProviderError):
    """400/404/422 other than context length: the request itself is wrong for every deployment."""

    code = "invalid_request"
    retryable = False
    fallback = False


class DeadlineExceeded(ProviderError):
    """The request's overall deadline passed before any deployment answered."""

    code = "deadline_exceeded"
    retryable = False
    fallback = False


class ProviderEgressRequired(ProviderError):
    """Every deployment of the model needs the public internet and the functions have no route to it
    (ProviderEgress=none): raised before any attempt, since each would only wait out its connect timeout.
    An operator's fix (a NAT, or a Bedrock deployment), not the caller's and not a transient one."""

    code = "provider_egress_required"
    retryable = False
    fallback = False


class AllDeploymentsFailed(ProviderError):
    """Every deployment of an alias failed (or was skipped by its circuit breaker); `attempts` says how."""

    code = "all_deployments_failed"
    retryable = False
    fallback = False

    def __init__(self, message: str, *, attempts: list[Any] | None = None,
                 last: ProviderError | None = None) -> None:
        super().__init__(message, status=last.status if last else None,
                         retry_after=last.retry_after if last else None)
        self.attempts = attempts or []
        self.last = last

    def wire_fields(self) -> dict[str, Any]:
        out = super().wire_fields()
        if self.last is not None:
            out["last"] = type(self.last).__name__
        return out


def read_wire(text: str) -> tuple[str, dict[str, Any]]:
    """A provider error's `str()` (a Lambda's errorMessage) -> (the message, its wire fields); text
    without a trailer (or with a damaged one) is all message."""
    start = text.rfind(_WIRE)
    tail = text[start + len(_WIRE):].rstrip()
    if start < 0 or not tail.endswith("]"):
        return text, {}
    try:
        fields = json.loads(tail[:-1])
    except ValueError:
        return text, {}
    return (text[:start], fields) if isinstance(fields, dict) else (text, {})
