"""Every failure leaves the gateway as OpenAI's error shape, so the official SDKs raise their typed
exceptions: `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status.

Domain and provider errors are mapped here once, through one table (`table`): `from_exception` for what is
raised in-process, `from_workflow` for a failed query workflow (by its error name, which is the failing
task's exception class); routes raise APIError directly only for what is the HTTP layer's own business
(auth, limits, unknown routes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

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


# --- the error shape in the OpenAPI document -----------------------------------------------------------
class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error response's body (OpenAI's shape)."""

    error: ErrorDetail


_WHY = {
    400: "Invalid request: a body or parameter that does not match the schema, a semantic problem, or text with NUL "
         "or a lone surrogate (`param` names the field)",
    401: "Missing, malformed, unknown or revoked API key",
    403: "The API key lacks the route's scope",
    404: "Not found (or another tenant's)",
    405: "Method not allowed (the `Allow` header lists the methods)",
    408: "The request body did not arrive in time",
    409: "Conflict with the resource's current state",
    413: "Request body or document over the size limit",
    429: "Rate limit or budget exhausted, or every provider rate limited the request (retry-after, "
         "x-ratelimit-* headers)",
    502: "The model provider failed",
    503: "A dependency (database, provider) is unavailable or overloaded, or no provider is reachable",
    504: "The request ran out of time",
}
# What any route may answer besides its own errors: a bad text field or schema, the body size limit or read
# timeout, an unreachable database. No 422: OpenAI answers a body that does not match its schema with 400
# (the SDKs raise BadRequestError), and so does Stratus.
COMMON = (400, 408, 413, 503)
AUTHENTICATED = (*COMMON, 401, 403)


def responses(*statuses: int, model: type[BaseModel] = ErrorResponse) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a router or route: each status with its description and the error schema, so the
    OpenAPI document declares every status the route can answer (checked by tests/fuzz)."""
    return {s: {"model": model, "description": _WHY[s]} for s in sorted(set(statuses))}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def schema_mismatch(message: str, *, param: str | None = None, code: str = "invalid_value") -> APIError:
    """A body or parameter that does not match the schema (wrong type, missing or unknown field): 400 as
    OpenAI answers it, naming the field; `code` says which kind (`missing_required_parameter`,
    `unknown_parameter`, `invalid_type`, `invalid_value`)."""
    return APIError(400, message, param=param, code=code)


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


# --- the one error table ------------------------------------------------------------------------------
# Every failure reaches the client through it: an exception raised in-process (plain and streamed chat, the
# other routes) and a failed query workflow (non-streamed RAG), whose error name is the failing task's
# exception class (its Lambda errorType) or a Step Functions / Lambda name. Both become a `Failure`; the
# row is the first class in the failure's MRO that the table names. docs/gateway.md#errors shows it.
OWN = "own"  # the code: the error's own (AllDeploymentsFailed: "all_deployments_failed")
LAST = "last"  # the code: the deciding class's (for AllDeploymentsFailed, its last failure's)
FIELD = "field"  # the param: the error's field
INTERNAL = "internal error; the request id identifies it in the logs"


@dataclass(frozen=True)
class Rule:
    status: int
    type: str = "api_error"
    code: str = OWN  # OWN, LAST or a fixed code
    param: str | None = None  # FIELD, a fixed param or None
    retry_after: bool = False  # retry-after (whole seconds, at least 1) when the failure carries one
    no_retry: bool = False  # x-should-retry: false (the SDKs would retry a 5xx)
    message: str | None = None  # a fixed message: nothing internal leaves
    model_code: str | None = None  # the code when the field is "model"


@dataclass(frozen=True)
class Failure:
    """What the table needs, from an exception or from a workflow's error name and cause."""

    kind: type[BaseException]  # picks the row: the error's class (AllDeploymentsFailed: its last failure's)
    message: str
    code: str  # the error's own code
    field: str | None = None
    retry_after: float | None = None


@functools.cache
def table() -> dict[type[BaseException], Rule]:
    from stratus.aws.workflows import WorkflowTimedOut
    from stratus.llm import errors as llm

    bad = "invalid_request_error"
    return {
        # The request is valid and names a known model; this deployment cannot serve it (no internet route to
        # any of the model's providers). 503: the operator's fix, and a 5xx counts on the error-rate alarm
        # where a 4xx would hide it. Not transient: the SDKs are told not to retry.
        llm.ProviderEgressRequired: Rule(503, code=LAST, param="model", no_retry=True),
        llm.ContextLengthExceeded: Rule(400, bad, code="context_length_exceeded", param="messages"),
        llm.InvalidRequest: Rule(400, bad, code="invalid_request", param=FIELD),
        llm.DeadlineExceeded: Rule(504, code=LAST),
        llm.ProviderTimeout: Rule(504, code=LAST),
        # Every deployment tried was rate limited: the client's fix is to slow down, so a 429 with the
        # provider's retry-after (the SDKs raise RateLimitError and honour it). Its own code keeps it apart
        # from the gateway's own limits (`rate_limit_exceeded`).
        llm.RateLimited: Rule(429, "requests", code="provider_rate_limited", retry_after=True),
        # Upstream trouble after retries and fallback: the gateway is fine, its providers are not; shedding
        # load (or a mix of rate limits and failures) says so: 503, with the provider's retry-after.
        llm.Overloaded: Rule(503, retry_after=True),
        llm.CircuitOpen: Rule(503, code=LAST, retry_after=True),
        # The provider refused the gateway's own credentials: the operator's problem (logged at error level
        # and counted as ProviderAuthFailures), never the caller's, and nothing about the account leaks.
        llm.AuthenticationFailed: Rule(502, code=LAST, no_retry=True,
                                       message="the model provider refused the gateway's credentials; "
                                               "the operator has been alerted"),
        llm.ProviderError: Rule(502, retry_after=True),
        domain.InvalidInput: Rule(400, bad, param=FIELD),
        domain.NotFound: Rule(404, bad, code="not_found", param=FIELD, model_code="model_not_found"),
        domain.Forbidden: Rule(403, "permission_error", param=FIELD),
        domain.TooLarge: Rule(413, bad, code="request_too_large", param=FIELD),
        domain.Unsupported: Rule(400, bad, param=FIELD),
        WorkflowTimedOut: Rule(504, code="timeout"),
        # The database is down or failing over: 503 + retry-after; a fixed message (the driver's text names hosts).
        domain.DatabaseUnavailable: Rule(503, retry_after=True,
                                         message="the database is temporarily unavailable; retry shortly"),
        domain.TransientError: Rule(503),
        BaseException: Rule(500, code="internal_error", message=INTERNAL),  # anything unexpected: no internals
    }


def from_exception(err: BaseException) -> APIError:
    """The API error for any failure raised in-process (a WorkflowFailed: for the failure it reports)."""
    from stratus.aws.workflows import WorkflowFailed
    from stratus.llm import errors as llm

    if isinstance(err, APIError):
        return err
    if isinstance(err, WorkflowFailed):
        return from_workflow(err.error, err.detail)
    kind: type[BaseException] = type(err)
    if isinstance(err, llm.AllDeploymentsFailed) and err.last is not None:
        kind = type(err.last)
    message = err.message if isinstance(err, domain.StratusError) else str(err)
    return apply(Failure(kind, message, getattr(err, "code", "internal_error"),
                         getattr(err, "field", None), getattr(err, "retry_after", None)))


def apply(failure: Failure) -> APIError:
    rules = table()
    rule = next(rules[k] for k in failure.kind.__mro__ if k in rules)
    if rule.model_code is not None and failure.field == "model":
        code = rule.model_code
    else:
        code = {OWN: failure.code, LAST: getattr(failure.kind, "code", failure.code)}.get(rule.code, rule.code)
    headers: dict[str, str] = {}
    if rule.retry_after and (failure.retry_after or rule.status == 429):  # a 429 always says when
        headers["retry-after"] = str(max(1, int(-(-(failure.retry_after or 1) // 1))))
    if rule.no_retry:
        headers["x-should-retry"] = "false"
    return APIError(rule.status, rule.message or failure.message, type=rule.type, code=code,
                    param=failure.field if rule.param == FIELD else rule.param, headers=headers)


# --- a failed query workflow ----------------------------------------------------------------------------
# Step Functions' own error names (and Lambda's, for an invocation that failed as such) as the class whose
# row they take; any other name that is not an exception class takes the last row (500).
TIMEOUT_NAMES = ("States.Timeout", "States.HeartbeatTimeout", "Sandbox.Timedout")
TRANSIENT_NAMES = ("Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                   "Lambda.TooManyRequestsException")  # the ASL retries these with TransientError


@functools.cache
def error_classes() -> dict[str, type[BaseException]]:
    """Exception classes by the name a Lambda reports them under (errorType): every subclass of the
    library's StratusError (domain, provider, workflow, prompt errors) and Python's built-in exceptions."""
    import builtins

    import stratus.aws.workflows
    import stratus.llm.errors
    import stratus.prompts.models  # noqa: F401 - PromptFileError, VersionConflict

    found = {n: c for n, c in vars(builtins).items() if isinstance(c, type) and issubclass(c, BaseException)}
    todo: list[type[BaseException]] = [domain.StratusError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def workflow_failure(name: str, detail: str) -> Failure:
    """A failed workflow's error name and detail (WorkflowFailed.detail: the errorMessage of the failing
    task's Lambda error JSON, or Step Functions' own text) as the failure the table maps. A provider error's
    retry-after, field and last failure come back from the trailer on its message (llm.errors.read_wire)."""
    from stratus.aws.workflows import WorkflowTimedOut
    from stratus.llm import errors as llm

    said = f"{name}: {detail}" if detail else name
    if name in TIMEOUT_NAMES:
        return Failure(WorkflowTimedOut, f"the query workflow timed out ({said})", "timeout")
    if name in TRANSIENT_NAMES:
        return Failure(domain.TransientError, f"the query workflow failed ({said})", domain.TransientError.code)
    detail = detail or name
    cls = error_classes().get(name, Exception)
    message, extra = llm.read_wire(detail)
    field = extra.get("field")
    if cls is domain.NotFound and "model" in message:  # a domain error's field does not travel
        field = "model"
    kind: type[BaseException] = cls
    if isinstance(extra.get("last"), str):
        kind = error_classes().get(extra["last"], cls)
    # A provider error's retry-after travels in its trailer; a domain error's is its class's (the database's).
    retry_after = extra.get("retry_after", getattr(cls, "retry_after", None))
    return Failure(kind, message, getattr(cls, "code", "internal_error"), field,
                   retry_after if isinstance(retry_after, int | float) else None)


def from_workflow(name: str, detail: str) -> APIError:
    return apply(workflow_failure(name, detail))
