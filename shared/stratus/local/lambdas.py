"""Lambda invocations routed to the local handlers, in process.

moto's Lambda backend runs functions in Docker. The local stack replaces
`moto.awslambda.models.LambdaFunction._invoke_lambda` (a private API, guarded by
tests/integration/test_lambda_hook.py) so that every path that invokes a function — a direct
`lambda.invoke`, a Step Functions task, an S3 or SQS trigger — runs functions/<name>/app.py here.
Each function's module is loaded once (a warm container) under a unique module name, by file path.
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
from collections.abc import Callable
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
    handler: str  # "app.handler"
    memory_mb: int = 128
    timeout_s: float = 3.0
    _fn: Callable[[Any, Any], Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.code_dir / (module.replace(".", "/") + ".py")

    def load(self) -> Callable[[Any, Any], Any]:
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

    def invoke(self, event: Any, *, region: str, account_id: str) -> tuple[str, bool, str]:
        """Run the handler: (payload JSON, errored, log text), the triple moto's backend expects."""
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
_install_lock = threading.Lock()


def _invoke_local(self: Any, event: Any = None) -> tuple[str, bool, str]:
    fn = _registry.get(self.function_name)
    if fn is None:  # not one of ours: moto's own behaviour
        assert _original is not None
        return _original(self, event)
    if isinstance(event, str | bytes):
        event = json.loads(event) if event else {}
    return fn.invoke({} if event is None else event, region=self.region, account_id=self.account_id)


def register(fn: LocalFunction) -> None:
    _registry[fn.name] = fn


def unregister(name: str) -> None:
    _registry.pop(name, None)


def install_hook() -> None:
    """Route moto Lambda invocations of registered functions to their local handlers."""
    global _original
    from moto.awslambda.models import LambdaFunction

    with _install_lock:
        if _original is None:
            _original = LambdaFunction._invoke_lambda
            LambdaFunction._invoke_lambda = _invoke_local  # type: ignore[method-assign]


def uninstall_hook() -> None:
    global _original
    from moto.awslambda.models import LambdaFunction

    with _install_lock:
        if _original is not None and not _registry:
            LambdaFunction._invoke_lambda = _original  # type: ignore[method-assign]
            _original = None
