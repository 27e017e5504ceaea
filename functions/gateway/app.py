"""Gateway: the OpenAI-compatible HTTP API (API Gateway -> Mangum -> FastAPI).

Cold start imports FastAPI, the app's routes and settings only: the database driver, boto3, the
embedding runtime and the provider SDKs load on the first request that needs them.
"""

from typing import Any

from mangum import Mangum

from stratus.gateway.app import create_app
from stratus.gateway.context import request_id_from
from stratus.observability import observe

obs = observe("gateway")  # a bad configuration fails the cold start, naming the variable
# lifespan off: the app has no startup work; background tasks (settle, trace) run before Mangum returns.
app = Mangum(create_app(), lifespan="off")


def _request_id(event: dict[str, Any]) -> str:
    # The request id is decided here, so the app, the logs and the response share it.
    headers = event.get("headers") or {}
    event["headers"] = headers
    headers["x-request-id"] = request_id_from(headers.get("x-request-id"))
    return headers["x-request-id"]


@obs.handler(correlation_id=_request_id)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response = app(event, context)
    obs.count(f"Responses{int(response.get('statusCode', 500)) // 100}xx")
    return response
