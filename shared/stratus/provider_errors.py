"""Provider failures, classified once by the adapters so the router can decide: retry, fall back, or stop.
Shared by every adapter that calls a model provider: chat (stratus.llm, which re-exports these names as
stratus.llm.errors), embeddings (stratus.embeddings) and reranking (stratus.retrieval).

- retryable: the same deployment may succeed if asked again (after `retry_after` when given).
- fallback: another deployment may succeed where this one failed.
- trips: the deployment itself is unhealthy (5xx, overload, timeout, no connection, a broken answer), so it
  counts towards opening its circuit breaker. A client's own bad request, a rate limit (the account's
  quota, told by retry-after) or rejected credentials (an operator's fix, alarmed apart) never do.
A failure that is neither retryable nor a fallback (e.g. a malformed request) stops the request: no other
model will accept it.

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
    trips = True

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 deployment: str | None = None, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.retry_after = retry_after
        self.deployment = deployment
        # Filled by the router: every attempt of the request (router.Attempt), for the trace. Typed loosely:
        # the router imports this module, so naming its class here would be an import cycle.
        self.attempts: list[Any] = []

    def __init_subclass__(cls, *, code: str, retryable: bool = False, fallback: bool = True, trips: bool = False,
                          **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.code, cls.retryable, cls.fallback, cls.trips = code, retryable, fallback, trips

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


# Each class declares its classification in its class statement (ProviderError.__init_subclass__): the
# taxonomy reads as one table, and a new class cannot forget to say whether it is retryable.
class RateLimited(ProviderError, code="rate_limited", retryable=True):
    """429: honour retry-after, else back off; other deployments have their own limits."""


class Overloaded(ProviderError, code="overloaded", retryable=True, trips=True):
    """503 / Anthropic's 529: the provider is shedding load."""


class ServerError(ProviderError, code="server_error", retryable=True, trips=True):
    """Any other 5xx."""


class ProviderTimeout(ProviderError, code="timeout", retryable=True, trips=True):
    """A connect or read timeout, or a provider's own 408 / model timeout."""


class ProviderUnavailable(ProviderError, code="connection_error", retryable=True, trips=True):
    """Connection refused or reset, DNS, TLS: nothing came back."""


class MalformedResponse(ProviderError, code="malformed_response", retryable=True, trips=True):
    """A 2xx whose body does not parse as the protocol says: never treated as an answer."""


class StreamInterrupted(ProviderError, code="stream_interrupted", retryable=True, trips=True):
    """A stream ended or broke before its final event. Once text has reached the caller it cannot be
    taken back, so the router falls back only if nothing was emitted yet."""


class ContextLengthExceeded(ProviderError, code="context_length_exceeded"):
    """The prompt does not fit this model; a deployment with a larger window may take it."""


class AuthenticationFailed(ProviderError, code="authentication_failed"):
    """401/403: this deployment's credentials are wrong; retrying cannot help, another deployment may."""


class InvalidRequest(ProviderError, code="invalid_request", fallback=False):
    """400/404/422 other than context length: the request itself is wrong for every deployment."""


class DeadlineExceeded(ProviderError, code="deadline_exceeded", fallback=False):
    """The request's overall deadline passed before any deployment answered."""


class ProviderEgressRequired(ProviderError, code="provider_egress_required", fallback=False):
    """Every deployment of the model needs the public internet and the functions have no route to it
    (ProviderEgress=none): raised before any attempt, since each would only wait out its connect timeout.
    An operator's fix (a NAT, or a Bedrock deployment), not the caller's and not a transient one."""


class CircuitOpen(ProviderError, code="circuit_open"):
    """The deployment was skipped: its circuit breaker is open after repeated provider-side failures.
    `retry_after` is what is left of its cooldown."""


class AllDeploymentsFailed(ProviderError, code="all_deployments_failed", fallback=False):
    """Every deployment of an alias failed (or was skipped by its circuit breaker); `attempts` says how,
    `last` is the failure that decides how the client is answered (`deciding`)."""

    def __init__(self, message: str, *, attempts: list[Any] | None = None,
                 last: ProviderError | None = None) -> None:
        super().__init__(message, status=last.status if last else None,
                         retry_after=last.retry_after if last else None)
        self.attempts = attempts or []
        self.last = deciding(last, self.attempts)

    def wire_fields(self) -> dict[str, Any]:
        out = super().wire_fields()
        if self.last is not None:
            out["last"] = type(self.last).__name__
        return out


def deciding(last: ProviderError | None, attempts: list[Any]) -> ProviderError | None:
    """The failure that answers the client when every deployment failed: a rate limit only when every
    deployment that was tried was rate limited (then retrying later is the client's fix: a 429); a rate
    limit beside other failures is capacity trouble upstream (Overloaded, a 503)."""
    if not isinstance(last, RateLimited):
        return last
    tried = [a.outcome for a in attempts if a.outcome not in ("ok", "circuit_open", "not_configured")]
    if all(outcome == RateLimited.code for outcome in tried):
        return last
    mixed = Overloaded(last.message, status=last.status, retry_after=last.retry_after, deployment=last.deployment)
    mixed.attempts = last.attempts
    return mixed


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
