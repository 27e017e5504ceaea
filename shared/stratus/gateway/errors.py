"""Every failure leaves the gateway as OpenAI's error shape, so the official SDKs raise their typed
exceptions: `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status.

Domain and provider errors are mapped here once (`from_exception`); routes raise APIError directly only
for what is the HTTP layer's own business (auth, limits, unknown routes).
"""

from __future__ import annotations

from typing import Any

from stratus import errors as domain


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unprocessable(message: str, *, param: str | None = None) -> APIError:
    """A body that does not match the schema (wrong type, missing field): 422, naming the field."""
    return APIError(422, message, param=param, code="invalid_value")


def too_large(message: str, *, param: str | None = None) -> APIError:
    return APIError(413, message, param=param, code="request_too_large")


def invalid_api_key() -> APIError:
    # One message for unknown, malformed and revoked keys: the response must not tell them apart.
    return APIError(401, "Incorrect or revoked API key provided. Send 'Authorization: Bearer <key>'.",
                    code="invalid_api_key")


def permission_denied(scope: str) -> APIError:
    return APIError(403, f"this API key lacks the {scope!r} scope", type="permission_error",
                    code="insufficient_scope")


def not_found(message: str, *, param: str | None = None, code: str = "not_found") -> APIError:
    return APIError(404, message, param=param, code=code)


def rate_limited(message: str, *, kind: str, retry_after_s: float, headers: dict[str, str]) -> APIError:
    """`kind` is "requests" or "tokens" (OpenAI's error type for each)."""
    seconds = max(1, int(-(-retry_after_s // 1)))  # whole seconds, rounded up
    return APIError(429, message, type=kind, code="rate_limit_exceeded",
                    headers={**headers, "retry-after": str(seconds)})


def budget_exhausted(message: str, *, headers: dict[str, str] | None = None) -> APIError:
    # OpenAI's quota error: 429 with type/code insufficient_quota (the SDK raises RateLimitError).
    # x-should-retry: the SDKs would otherwise retry a 429, and an exhausted budget does not refill in seconds.
    return APIError(429, message, type="insufficient_quota", code="insufficient_quota",
                    headers={**(headers or {}), "x-should-retry": "false"})


def guard_blocked(verdict: Any) -> APIError:
    """A rail refused the request (input) or its answer (output): 400 with code `guard_<rail>`, the
    OpenAI shape, so clients can tell which rail and why without parsing the message."""
    direction = "the request" if verdict.stage == "input" else "the answer"
    if verdict.rail == "groundedness":
        why = f"support {verdict.score:.2f} is under {verdict.threshold:.2f}"
    else:
        why = f"score {verdict.score:.2f} is at or over {verdict.threshold:.2f}" if verdict.threshold is not None \
            else f"score {verdict.score:.2f}"
    return APIError(400, f"the {verdict.rail} guard rail blocked {direction}: {why}",
                    param="messages" if verdict.stage == "input" else None, code=f"guard_{verdict.rail}")


def from_exception(err: Exception) -> APIError:
    """The API error for a domain or provider failure; anything unexpected is a 500 without internals."""
    from stratus.llm import errors as llm

    if isinstance(err, APIError):
        return err
    if isinstance(err, llm.ProviderError):
        return _from_provider(err)
    if isinstance(err, domain.InvalidInput):
        return invalid_request(err.message, param=err.field, code=err.code)
    if isinstance(err, domain.NotFound):
        code = "model_not_found" if err.field == "model" else "not_found"
        return not_found(err.message, param=err.field, code=code)
    if isinstance(err, domain.Forbidden):
        return APIError(403, err.message, type="permission_error", code=err.code, param=err.field)
    if isinstance(err, domain.TooLarge):
        return too_large(err.message, param=err.field)
    if isinstance(err, domain.Unsupported):
        return invalid_request(err.message, param=err.field, code=err.code)
    if isinstance(err, domain.TransientError):
        return APIError(503, err.message, type="api_error", code=err.code)
    return APIError(500, "internal error; the request id identifies it in the logs", type="api_error",
                    code="internal_error")


def _from_provider(err: Any) -> APIError:
    from stratus.llm import errors as llm

    last = err.last if isinstance(err, llm.AllDeploymentsFailed) and err.last is not None else err
    if isinstance(last, llm.ProviderEgressRequired):
        # The request is valid and names a known model; this deployment cannot serve it (no internet route
        # to any of the model's providers). 503: the operator's fix, and a 5xx counts on the error-rate
        # alarm where a 4xx would hide it. Not transient: the SDKs are told not to retry.
        return APIError(503, err.message, type="api_error", code=last.code, param="model",
                        headers={"x-should-retry": "false"})
    if isinstance(last, llm.ContextLengthExceeded):
        return invalid_request(err.message, param="messages", code="context_length_exceeded")
    if isinstance(last, llm.InvalidRequest):
        return invalid_request(err.message, param=err.field, code="invalid_request")
    if isinstance(last, llm.DeadlineExceeded | llm.ProviderTimeout):
        return APIError(504, err.message, type="api_error", code=last.code)
    headers = {"retry-after": str(max(1, int(last.retry_after)))} if last.retry_after else None
    # Upstream trouble after retries and fallback: the gateway is fine, its providers are not.
    return APIError(502 if not isinstance(last, llm.RateLimited | llm.Overloaded) else 503, err.message,
                    type="api_error", code=err.code, headers=headers)
