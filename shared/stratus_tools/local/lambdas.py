"""Lambda invocations routed to the local handlers, in process.

moto's Lambda backend runs functions in Docker. The local stack replaces
`moto.awslambda.models.LambdaFunction._invoke_lambda` (a private API, guarded by
tests/integration/test_lambda_hook.py) so that every path that invokes a function — a direct
`lambda.invoke`, a Step Functions task, an S3 or SQS trigger — runs functions/<name>/app.py here.
Each function's module is loaded once (a warm container) under a unique module name, by file path.

X-Ray trace headers travel as on AWS: an Invoke request's `X-Amzn-Trace-Id` header (a traced Step
Functions task sends it, stratus_tools.local.sync_executions; so does the SQS poller for a message with an
AWSTraceHeader) reaches the function as its invocation's trace header (`trace_header=`). The in-process
handlers run untraced and ignore it; the Lambda-contract tier's processes get it as Lambda-Runtime-Trace-Id.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class LambdaContext:
    """The context object Lambda passes to a handler (the attributes Powertools reads)."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: float
    region: str
    account_id: str
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/[{self.function_version}]{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        # Informational only: a thread cannot be stopped, so the timeout is not enforced locally.
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    """A template function: which file and attribute handle it, and its configured limits."""

    logical_id: str
    name: str
    code_dir: Path
    handler: str  # "app.handler" (a start script when web_app)
    memory_mb: int = 128
    timeout_s: float = 3.0
    # Behind the Lambda Web Adapter: an HTTP app, which local mode serves over HTTP (stratus dev), not by invoke.
    web_app: bool = False
    _fn: Callable[[Any, Any], Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> Path:
        if self.web_app:
            return self.code_dir / self.handler
        module, _, _ = self.handler.rpartition(".")
        return self.code_dir / (module.replace(".", "/") + ".py")

    def load(self) -> Callable[[Any, Any], Any]:
        if self.web_app:
            raise ImportError(f"{self.logical_id} is a web app behind the Lambda Web Adapter ({self.handler}): "
                              "locally it answers over HTTP (stratus dev), not through a Lambda invoke")
        with self._lock:
            if self._fn is None:
                module_name, _, attribute = self.handler.rpartition(".")
                unique = f"stratus_local_fn_{self.logical_id}_{uuid.uuid4().hex[:8]}"
                spec = importlib.util.spec_from_file_location(unique, self.path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"{self.logical_id}: cannot load handler module {self.path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[unique] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(unique, None)
                    raise
                fn = getattr(module, attribute, None)
                if not callable(fn):
                    raise ImportError(f"{self.logical_id}: {self.path} has no callable {attribute!r}")
                self._fn = fn
            return self._fn

    def invoke(self, event: Any, *, region: str, account_id: str,
               trace_header: str | None = None) -> tuple[str, bool, str]:
        """Run the handler: (payload JSON, errored, log text), the triple moto's backend expects. The trace
        header is not used: in process, handlers run with tracing off."""
        context = LambdaContext(self.name, self.memory_mb, self.timeout_s, region, account_id)
        started = time.perf_counter()
        errored = False
        try:
            result = self.load()(event, context)
            payload = json.dumps(result)
        except Exception as err:  # a handler error becomes a function error, as on Lambda
            errored = True
            log.warning("%s failed: %s: %s", self.name, type(err).__name__, err)
            error_type = "Runtime.MarshalError" if isinstance(err, TypeError | ValueError) and (
                "JSON serializable" in str(err) or "Circular reference" in str(err)) else type(err).__name__
            payload = json.dumps({
                "errorMessage": str(err), "errorType": error_type, "requestId": context.aws_request_id,
                "stackTrace": traceback.format_exception(err)[1:],
            })
        took_ms = (time.perf_counter() - started) * 1000
        logs = (f"START RequestId: {context.aws_request_id} Version: $LATEST\n"
                f"END RequestId: {context.aws_request_id}\n"
                f"REPORT RequestId: {context.aws_request_id}\tDuration: {took_ms:.2f} ms\t"
                f"Memory Size: {self.memory_mb} MB")
        return payload, errored, logs


_registry: dict[str, LocalFunction] = {}
_original: Callable[..., tuple[str, bool, str]] | None = None
_original_invoke: Callable[..., Any] | None = None
_install_lock = threading.Lock()
TRACE_HEADER = "X-Amzn-Trace-Id"
_incoming = threading.local()  # the trace header of the Invoke request moto is serving on this thread
_outgoing = threading.local()  # the trace header this thread's Invoke calls send (outgoing_trace_header)


def _invoke_local(self: Any, event: Any = None) -> tuple[str, bool, str]:
    fn = _registry.get(self.function_name)
    if fn is None:  # not one of ours: moto's own behaviour
        assert _original is not None
        return _original(self, event)
    if isinstance(event, str | bytes):
        event = json.loads(event) if event else {}
    header = getattr(_incoming, "trace_header", None)
    tracing = {"trace_header": header} if header else {}
    return fn.invoke({} if event is None else event, region=self.region, account_id=self.account_id, **tracing)


def _invoke_with_headers(self: Any, body: str, request_headers: Any, response_headers: Any) -> Any:
    """moto's LambdaFunction.invoke, remembering the request's trace header for `_invoke_local` (which
    moto calls on this thread, without the headers)."""
    assert _original_invoke is not None
    previous = getattr(_incoming, "trace_header", None)  # an invoke nested in a handler (moto's decorator mode)
    _incoming.trace_header = _header(request_headers, TRACE_HEADER)
    try:
        return _original_invoke(self, body, request_headers, response_headers)
    finally:
        _incoming.trace_header = previous


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:  # a plain dict (moto's decorator mode) keeps the sender's spelling
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return str(value) if value else None


@contextmanager
def outgoing_trace_header(header: str | None) -> Iterator[None]:
    """Lambda Invoke calls made on this thread in the block, by a client `carry_trace_headers` prepared,
    send `header` as X-Amzn-Trace-Id (as a traced AWS service invoking a function does)."""
    previous = getattr(_outgoing, "trace_header", None)
    _outgoing.trace_header = header
    try:
        yield
    finally:
        _outgoing.trace_header = previous


def carry_trace_headers(lambda_client: Any) -> Any:
    """Prepares a boto3 Lambda client to send this thread's `outgoing_trace_header` with each Invoke."""
    lambda_client.meta.events.register("before-sign.lambda.Invoke", _add_trace_header,
                                       unique_id="stratus-local-trace-header")
    return lambda_client


def _add_trace_header(request: Any, **_: Any) -> None:
    header = getattr(_outgoing, "trace_header", None)
    if header:
        request.headers[TRACE_HEADER] = header


def register(fn: LocalFunction) -> None:
    _registry[fn.name] = fn


def unregister(name: str) -> None:
    _registry.pop(name, None)


def install_hook() -> None:
    """Route moto Lambda invocations of registered functions to their local handlers."""
    global _original, _original_invoke
    from moto.awslambda.models import LambdaFunction

    with _install_lock:
        if _original is None:
            _original = LambdaFunction._invoke_lambda
            _original_invoke = LambdaFunction.invoke
            LambdaFunction._invoke_lambda = _invoke_local  # type: ignore[method-assign]
            LambdaFunction.invoke = _invoke_with_headers  # type: ignore[method-assign]


def uninstall_hook() -> None:
    global _original, _original_invoke
    from moto.awslambda.models import LambdaFunction

    with _install_lock:
        if _original is not None and not _registry:
            LambdaFunction._invoke_lambda = _original  # type: ignore[method-assign]
            LambdaFunction.invoke = _original_invoke  # type: ignore[method-assign]
            _original = _original_invoke = None
