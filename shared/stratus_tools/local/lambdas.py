"""Lambda invocations routed to the local handlers, in process.

moto's Lambda backend runs functions in Docker. The local stack replaces
`moto.awslambda.models.LambdaFunction._invoke_lambda` (a private API, guarded by
tests/integration/test_lambda_hook.py) so that every path that invokes a function — a direct
`lambda.invoke`, a Step Functions task, an S3 or SQS trigger — runs functions/<name>/app.py here.
Each function's module is loaded once (a warm container) under a unique module name, by file path.

Invocations run on execution environments, as on Lambda: an environment is a thread that serves one
invocation at a time and is kept warm between them, and a second concurrent invocation starts an environment
of its own; one idle for IDLE_RETIRE_S ends. What a handler keeps per thread, its database connection above
all, therefore lives on from one invocation to the next (not one connection per Step Functions task thread,
as when handlers ran on the caller's thread). `LocalFunction.close` (the stack's stop) closes each
environment's connections.

X-Ray trace headers travel as on AWS: an Invoke request's `X-Amzn-Trace-Id` header (a traced Step
Functions task sends it, stratus_tools.local.sync_executions; so does the SQS poller for a message with an
AWSTraceHeader) reaches the function as its invocation's trace header (`trace_header=`). The in-process
handlers run untraced and ignore it; the Lambda-contract tier's processes get it as Lambda-Runtime-Trace-Id.
"""

from __future__ import annotations

import contextvars
import importlib.util
import json
import logging
import queue
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
# An environment with no invocation for this long ends and closes its connections, as Lambda reclaims idle
# execution environments (after minutes; the time is not documented): a long `stratus dev` does not keep
# its busiest minute's connections for ever.
IDLE_RETIRE_S = 300.0


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


class ExecutionEnvironment:
    """One warm execution environment of a function: a thread that runs its invocations one at a time and
    ends after IDLE_RETIRE_S without one, if `retire` takes it out of its function's idle list first."""

    def __init__(self, name: str, retire: Callable[[ExecutionEnvironment], bool]) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._retire = retire
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, call: Callable[[], T]) -> T:
        """`call()` on this environment's thread, in the caller's context (its contextvars); its result or
        its exception."""
        future: Future[T] = Future()
        context = contextvars.copy_context()

        def task() -> None:
            try:
                future.set_result(context.run(call))
            except BaseException as err:  # handed to the caller, who raises it
                future.set_exception(err)

        self._calls.put(task)
        return future.result()

    def close(self, wait_s: float = 0.0) -> None:
        """Ends the thread once it is idle (waiting up to `wait_s` for that); it closes the database
        connections its invocations kept."""
        self._calls.put(None)
        if wait_s:
            self._thread.join(wait_s)

    def _serve(self) -> None:
        while True:
            try:
                task = self._calls.get(timeout=IDLE_RETIRE_S)
            except queue.Empty:
                if self._retire(self):  # nobody can hand it an invocation any more
                    break
                continue  # just taken for an invocation: it is on its way
            if task is None:
                break
            task()
        from stratus.db.connection import close_connection

        close_connection()


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
    _lock: threading.Lock = field(default_factory=threading.Lock)  # loading the handler
    _pool_lock: threading.Lock = field(default_factory=threading.Lock)  # the environments below
    _idle: list[ExecutionEnvironment] = field(default_factory=list)  # warm, waiting for an invocation
    _started: int = 0  # environments started, for their thread names
    _closed: bool = False

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
        """Run the handler on a warm execution environment (an idle one, else a new one): (payload JSON,
        errored, log text), the triple moto's backend expects. The trace header is not used: in process,
        handlers run with tracing off."""
        environment = self._checkout()
        try:
            return environment.run(lambda: self._run_handler(event, region, account_id))
        finally:
            self._checkin(environment)

    def close(self) -> None:
        """Ends the idle environments (each closing its connections), and each busy one when its invocation
        returns."""
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for environment in idle:
            environment.close(wait_s=5.0)

    def _checkout(self) -> ExecutionEnvironment:
        with self._pool_lock:
            if self._idle:
                return self._idle.pop()
            self._started += 1
            started = self._started
        return ExecutionEnvironment(f"lambda-{self.logical_id}-{started}", self._retire)

    def _checkin(self, environment: ExecutionEnvironment) -> None:
        with self._pool_lock:
            if not self._closed:
                self._idle.append(environment)
                return
        environment.close()

    def _retire(self, environment: ExecutionEnvironment) -> bool:
        """Takes an environment that has idled IDLE_RETIRE_S out of the idle list; False if it was just
        taken for an invocation."""
        with self._pool_lock:
            if environment in self._idle:
                self._idle.remove(environment)
                return True
            return False

    def _run_handler(self, event: Any, region: str, account_id: str) -> tuple[str, bool, str]:
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
