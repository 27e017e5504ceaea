"""Gateway: the OpenAI-compatible HTTP API (API Gateway HTTP API -> Mangum -> FastAPI).

Cold start imports FastAPI, the app's routes and settings only: the database driver, boto3, the
embedding runtime and the provider SDKs load on the first request that needs them, and the X-Ray SDK
only when tracing is on. Streamed responses are buffered by API Gateway + Mangum and arrive in one
piece (with the same SSE body); local mode (uvicorn) streams for real.
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum

from stratus.config import get_settings
from stratus.gateway.app import create_app
from stratus.gateway.context import request_id_from

settings = get_settings()  # a bad configuration fails the cold start, naming the variable
logger = Logger(service="gateway", level=settings.log_level)
copy_config_to_registered_loggers(source_logger=logger, include={"stratus"})  # library logs as JSON too
metrics = Metrics(namespace="Stratus", service="gateway")
# lifespan off: the app has no startup work; background tasks (settle, trace) run before Mangum returns.
app = Mangum(create_app(settings), lifespan="off")
_tracer: Any = None


def _traced(fn: Any) -> Any:
    global _tracer
    if not settings.tracing:
        return fn
    if _tracer is None:
        from aws_lambda_powertools import Tracer  # imports the X-Ray SDK

        _tracer = Tracer(service="gateway")
    return _tracer.capture_method(fn)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # The request id is decided here, so the app, the logs and the response share it.
    headers = event.setdefault("headers", {}) or {}
    event["headers"] = headers
    rid = request_id_from(headers.get("x-request-id"))
    headers["x-request-id"] = rid
    logger.set_correlation_id(rid)
    response = _traced(app)(event, context)
    status = int(response.get("statusCode", 500))
    metrics.add_metric(name=f"Responses{status // 100}xx", unit=MetricUnit.Count, value=1)
    return response
