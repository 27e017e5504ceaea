"""The one error table (stratus.gateway.errors): every error class the library defines, raised in-process
(plain and streamed chat) or reported by a failed query workflow (non-streamed RAG: the failing task's
Lambda error, i.e. the class name and `str(err)`), becomes the same status, type, code and retry-after;
and every Step Functions / Lambda error name the workflow can end with has its row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from stratus import errors as domain
from stratus.aws.workflows import WorkflowFailed, WorkflowTimedOut
from stratus.gateway import errors as api
from stratus.gateway.chat import workflow_error
from stratus.llm import errors as llm


def lambda_cause(err: BaseException) -> str:
    """The cause Step Functions passes on for a task whose Lambda raised `err` (the runtime's error JSON)."""
    frame = '  File "/var/task/app.py", line 24, in handler\n    response = generate(task)\n'
    return json.dumps({"errorMessage": str(err), "errorType": type(err).__name__, "requestId": str(uuid.uuid4()),
                       "stackTrace": [frame]})


def through_workflow(err: BaseException) -> api.APIError:
    """`err` raised in a workflow task: Catch -> Fail (ErrorPath $.error.Error, CausePath $.error.Cause)."""
    return api.from_exception(WorkflowFailed(type(err).__name__, lambda_cause(err)))


def library_classes() -> list[type[BaseException]]:
    """Every StratusError subclass the gateway can meet (the registry walks the same tree)."""
    classes = [c for c in api.error_classes().values() if issubclass(c, domain.StratusError)]
    assert {domain.InvalidInput, domain.TransientError, llm.RateLimited, llm.AllDeploymentsFailed,
            llm.ProviderEgressRequired, WorkflowTimedOut} <= set(classes)
    return sorted(classes, key=lambda c: c.__name__)


def instances(cls: type[BaseException]) -> Iterator[BaseException]:
    """Instances of `cls` as the code raises them: with and without a field and a retry-after; an
    AllDeploymentsFailed with each provider failure as its last."""
    if cls is WorkflowFailed:  # the workflow's own envelope: from_exception unwraps it (tested below)
        return
    if cls is llm.AllDeploymentsFailed:
        yield cls("no deployment of 'fast' answered (none)")
        for last in provider_classes():
            if last is not llm.AllDeploymentsFailed:
                for inner in instances(last):
                    assert isinstance(inner, llm.ProviderError)
                    yield cls(f"no deployment of 'fast' answered (loop: {inner.code})", last=inner)
        return
    if issubclass(cls, llm.ProviderError):
        yield cls(f"loop: {cls.__name__} [upstream said: no]")
        yield cls("loop: slow down", retry_after=2.5, status=429)
        yield cls("loop: messages[0] is bad", field="messages[0]")
        return
    assert issubclass(cls, domain.StratusError)
    yield cls(f"{cls.__name__}: something about the input")
    if cls is domain.NotFound:
        yield cls("model 'nope' does not exist", field="model")


def provider_classes() -> list[type[llm.ProviderError]]:
    return [c for c in library_classes() if issubclass(c, llm.ProviderError)]


def shape(err: api.APIError) -> tuple[int, str, str | None, str | None]:
    return err.status, err.type, err.code, err.headers.get("retry-after")


@pytest.mark.parametrize("cls", library_classes(), ids=lambda c: c.__name__)
def test_every_error_class_maps_the_same_in_process_and_through_the_workflow(cls: type[BaseException]) -> None:
    for err in instances(cls):
        direct, remote = api.from_exception(err), through_workflow(err)
        assert shape(direct) == shape(remote), f"{err!r}"
        assert direct.headers == remote.headers
        assert direct.message == remote.message  # the trailer never reaches the client
        assert "[stratus" not in remote.message
        if isinstance(err, llm.ProviderError) or getattr(err, "field", None) is None:
            assert direct.param == remote.param  # a domain error's field does not travel (NotFound: "model")


@pytest.mark.parametrize(("err", "status", "code", "retry_after"), [
    # every deployment rate limited: the client's 429 (RateLimitError), retry-after rounded up, at least 1 s
    (llm.AllDeploymentsFailed("x", last=llm.RateLimited("429", retry_after=1.2)), 429, "provider_rate_limited", "2"),
    (llm.AllDeploymentsFailed("x", last=llm.RateLimited("429")), 429, "provider_rate_limited", "1"),
    (llm.AllDeploymentsFailed("x", last=llm.CircuitOpen("open", retry_after=12.5)), 503, "circuit_open", "13"),
    (llm.AllDeploymentsFailed("x", last=llm.Overloaded("529", retry_after=7)), 503, "all_deployments_failed", "7"),
    (llm.AllDeploymentsFailed("x", last=llm.ServerError("500")), 502, "all_deployments_failed", None),
    (llm.AllDeploymentsFailed("x", last=llm.ServerError("500", retry_after=0.2)), 502, "all_deployments_failed", "1"),
    (llm.AllDeploymentsFailed("x", last=llm.AuthenticationFailed("401")), 502, "authentication_failed", None),
    (llm.AllDeploymentsFailed("x", last=llm.ProviderTimeout("slow")), 504, "timeout", None),
    (llm.AllDeploymentsFailed("x", last=llm.ContextLengthExceeded("long")), 400, "context_length_exceeded", None),
    (llm.AllDeploymentsFailed("x"), 502, "all_deployments_failed", None),
    (llm.RateLimited("429", retry_after=3), 429, "provider_rate_limited", "3"),
    (llm.CircuitOpen("open"), 503, "circuit_open", None),
    (llm.StreamInterrupted("cut"), 502, "stream_interrupted", None),
    (llm.InvalidRequest("400"), 400, "invalid_request", None),
    (llm.DeadlineExceeded("late"), 504, "deadline_exceeded", None),
    (llm.ProviderEgressRequired("no route", field="model"), 503, "provider_egress_required", None),
    (domain.InvalidInput("bad", field="messages"), 400, "invalid_input", None),
    (domain.NotFound("model 'x'", field="model"), 404, "model_not_found", None),
    (domain.NotFound("doc"), 404, "not_found", None),
    (domain.Forbidden("no"), 403, "forbidden", None),
    (domain.TooLarge("big"), 413, "request_too_large", None),
    (domain.Unsupported("odd"), 400, "unsupported", None),
    (domain.TransientError("db away"), 503, "transient", None),
    (WorkflowTimedOut("waited"), 504, "timeout", None),
    (domain.ExtractionFailed("pdf"), 500, "internal_error", None),
    (domain.StratusError("?"), 500, "internal_error", None),
    (KeyError("x"), 500, "internal_error", None),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None)
def test_the_table(err: BaseException, status: int, code: str, retry_after: str | None) -> None:
    for mapped in (api.from_exception(err), through_workflow(err)):
        assert (mapped.status, mapped.code, mapped.headers.get("retry-after")) == (status, code, retry_after)
        assert set(mapped.body()["error"]) == {"message", "type", "param", "code"}
    if status == 500:
        assert "internal error" in api.from_exception(err).message  # nothing internal leaves


def test_rejected_provider_credentials_leak_nothing_and_are_not_retried() -> None:
    err = llm.AllDeploymentsFailed("x", last=llm.AuthenticationFailed("loop: 401 invalid x-api-key sk-ant-123"))
    for mapped in (api.from_exception(err), through_workflow(err)):
        assert mapped.status == 502 and mapped.headers.get("x-should-retry") == "false"
        assert "sk-ant" not in mapped.message and "x-api-key" not in mapped.message
        assert "operator" in mapped.message


def test_the_egress_error_is_not_retried_and_names_the_model() -> None:
    err = llm.ProviderEgressRequired("no route (ProviderEgress=none)", field="model")
    for mapped in (api.from_exception(err), through_workflow(err), workflow_error(
            WorkflowFailed("ProviderEgressRequired", lambda_cause(err)))):
        assert mapped.param == "model" and mapped.headers == {"x-should-retry": "false"}


# --- Step Functions' and Lambda's own error names -----------------------------------------------------
SANDBOX_TIMEOUT = json.dumps({"errorMessage": "RequestId: 9c1b Error: Task timed out after 24.00 seconds",
                              "errorType": "Sandbox.Timedout"})
THROTTLED = ("Rate Exceeded. (Service: AWSLambda; Status Code: 429; Error Code: TooManyRequestsException; "
             "Request ID: 3f9a)")


@pytest.mark.parametrize(("name", "cause"), [
    ("States.Timeout", ""),
    ("States.Timeout", "Task timed out."),
    ("States.HeartbeatTimeout", ""),
    ("Sandbox.Timedout", SANDBOX_TIMEOUT),
])
def test_timeouts_are_504_timeout(name: str, cause: str) -> None:
    mapped = api.from_exception(WorkflowFailed(name, cause))
    assert (mapped.status, mapped.type, mapped.code) == (504, "api_error", "timeout")
    assert "timed out" in mapped.message and name in mapped.message
    assert shape(mapped) == shape(api.from_exception(WorkflowTimedOut("waited")))  # as the gateway's own wait


@pytest.mark.parametrize("name", api.TRANSIENT_NAMES)
def test_lambda_service_failures_are_transient_as_the_asl_retries_them(name: str) -> None:
    mapped = api.from_exception(WorkflowFailed(name, THROTTLED))
    assert shape(mapped) == shape(api.from_exception(domain.TransientError("x"))) == (503, "api_error", "transient",
                                                                                      None)


@pytest.mark.parametrize(("name", "cause"), [
    ("States.Runtime", "An error occurred while executing the state 'Generate'. The JSONPath '$.guard' could "
                       "not be found in the input"),
    ("States.TaskFailed", ""),
    ("States.DataLimitExceeded", "The state/task 'Generate' returned a result with a size exceeding the maximum"),
    ("States.Permissions", "Neither the global service principal states.amazonaws.com, nor the regional one is "
                           "authorized to assume the provided role."),
    ("States.ResultPathMatchFailure", "Unable to apply ResultPath \"$.retrieval\""),
    ("States.ParameterPathFailure", "The JSONPath '$.guard.search_query' could not be found"),
    ("States.IntrinsicFailure", ""),
    ("States.NoChoiceMatched", ""),
    ("States.BranchFailed", ""),
    ("Lambda.Unknown", "The cause could not be determined because Lambda did not return an error type."),
    ("Runtime.ExitError", json.dumps({"errorMessage": "RequestId: 1 Error: Runtime exited with error: signal: "
                                                      "killed", "errorType": "Runtime.ExitError"})),
    ("Runtime.MarshalError", json.dumps({"errorMessage": "Unable to marshal response", "errorType":
                                         "Runtime.MarshalError"})),
    ("Runtime.ImportModuleError", json.dumps({"errorMessage": "Unable to import module 'app'",
                                              "errorType": "Runtime.ImportModuleError"})),
    ("KeyError", json.dumps({"errorMessage": "'text'", "errorType": "KeyError"})),
    ("ValidationError", json.dumps({"errorMessage": "1 validation error", "errorType": "ValidationError"})),
    ("SomethingNobodyRaises", ""),
    ("FAILED", ""),  # run_workflow's name when Step Functions gives none
])
def test_any_other_failure_is_a_500_that_shows_nothing_internal(name: str, cause: str) -> None:
    mapped = api.from_exception(WorkflowFailed(name, cause))
    assert (mapped.status, mapped.code) == (500, "internal_error")
    assert mapped.message == api.INTERNAL and not mapped.headers
    assert shape(mapped) == shape(api.from_exception(RuntimeError("a bug in-process")))


# --- the trailer a provider error carries across the Lambda boundary -----------------------------------
def test_the_wire_trailer_round_trips_and_leaves_message_alone() -> None:
    err = llm.AllDeploymentsFailed("none answered [a: 429]", last=llm.RateLimited("429", retry_after=2.0))
    assert err.message == "none answered [a: 429]"
    assert llm.read_wire(str(err)) == ("none answered [a: 429]", {"retry_after": 2.0, "last": "RateLimited"})
    assert str(llm.ServerError("plain")) == "plain"  # nothing to carry: no trailer
    field = llm.InvalidRequest("bad", field="messages[0].content")
    assert llm.read_wire(str(field)) == ("bad", {"field": "messages[0].content"})
    assert llm.read_wire("text [stratus {not json}]") == ("text [stratus {not json}]", {})
    assert llm.read_wire("cut [stratus {\"last\": \"Rate") == ("cut [stratus {\"last\": \"Rate", {})


def test_a_damaged_or_missing_trailer_degrades_to_the_class_alone() -> None:
    # e.g. a task on an older layer: the class still decides; only retry-after and the last failure are lost.
    mapped = api.from_exception(WorkflowFailed("AllDeploymentsFailed", json.dumps(
        {"errorMessage": "no deployment of 'fast' answered", "errorType": "AllDeploymentsFailed"})))
    assert shape(mapped) == (502, "api_error", "all_deployments_failed", None)
    unknown_last = api.from_workflow("AllDeploymentsFailed", 'x [stratus {"last":"Gone","retry_after":1}]')
    assert shape(unknown_last) == (502, "api_error", "all_deployments_failed", "1")
