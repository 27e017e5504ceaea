"""The FastAPI application: OpenAI-compatible inference, documents and administration.

Served by uvicorn: on Lambda behind the Lambda Web Adapter (functions/gateway/run.sh), locally in
`stratus dev`. Cross-cutting work sits in one pure ASGI middleware (cheap: no BaseHTTPMiddleware task per
request): the request id, the body size limit and the last-resort error response. Every error leaves in
OpenAI's shape (errors.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stratus import spans, telemetry
from stratus.config import Settings, get_settings
from stratus.errors import StratusError
from stratus.gateway import edge, errors
from stratus.gateway.anthropic_api import PATH as ANTHROPIC_PATH
from stratus.gateway.anthropic_api import error_body as anthropic_error_body
from stratus.gateway.context import RequestContext, context_of, finish_task, new_context, request_id_from
from stratus.gateway.routes import (
    admin,
    approvals,
    audit,
    chat,
    documents,
    embeddings,
    messages,
    models,
    reindex,
    responses,
    rollouts,
)

if TYPE_CHECKING:
    from starlette.types import Message, Receive

log = logging.getLogger(__name__)

VERSION = "1.0.0"
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def create_app(settings: Settings | None = None) -> FastAPI:
    s = settings or get_settings()
    telemetry.configure("gateway", s)  # OpenTelemetry when an OTLP endpoint is set (once per process)
    app = FastAPI(title="Stratus", version=VERSION, openapi_url="/openapi.json",
                  description="OpenAI-compatible LLM gateway with retrieval-augmented answers, per tenant.",
                  # Every path, query and body string is checked for NUL and lone surrogates (edge.py).
                  dependencies=[Depends(edge.check_text)],
                  # The request's span is GatewayMiddleware's (stratus.spans: it reads the caller's traceparent and
                  # returns the gateway's); FastAPI's own spans would be a second server span beside it.
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = s
    for router in (models.router, chat.router, messages.router, responses.router, embeddings.router,
                   documents.router, admin.router, approvals.router, audit.router, reindex.router, rollouts.router):
        app.include_router(router)

    @app.get("/health/live", include_in_schema=False)
    def live() -> dict[str, str]:
        # The process serves requests: the Lambda Web Adapter's readiness check. Not the database: a cold
        # start during an outage must come up and answer 503s, not wait for the database until init times out.
        return {"status": "ok"}

    @app.get("/health", include_in_schema=False)
    def health() -> JSONResponse:
        # Reports the database (a cached SELECT 1, stratus.gateway.deps.database_ok): 503 + retry-after when
        # it does not answer, so a load balancer or operator sees the outage the routes answer with.
        from stratus.gateway.deps import HEALTH_TTL_S, database_ok

        if database_ok():
            return JSONResponse({"status": "ok", "database": "ok"})
        return JSONResponse({"status": "unavailable", "database": "unavailable"}, status_code=503,
                            headers={"retry-after": str(max(1, round(HEALTH_TTL_S)))})

    app.add_exception_handler(errors.APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StratusError, _domain_error)
    _add_provider_handler(app)
    app.add_middleware(GatewayMiddleware, max_body_bytes=s.max_body_bytes, body_timeout_s=s.body_timeout_s)
    _without_422(app)
    return app


def _without_422(app: FastAPI) -> None:
    """FastAPI declares a 422 (its HTTPValidationError) on every route with parameters; the gateway never
    answers 422 (a schema mismatch is a 400 in OpenAI's error shape, declared through errors.COMMON), so
    the document drops them and the schemas only they used."""
    build = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = build()
            for path in doc.get("paths", {}).values():
                for operation in path.values():
                    if isinstance(operation, dict):
                        operation.get("responses", {}).pop("422", None)
            schemas = doc.get("components", {}).get("schemas", {})
            text = json.dumps(doc["paths"])
            for name in ("HTTPValidationError", "ValidationError"):
                if f"#/components/schemas/{name}\"" not in text:
                    schemas.pop(name, None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def error_response(request: Request, err: errors.APIError) -> JSONResponse:
    """The error in OpenAI's shape; the request's trace (and the release of what admission reserved)
    follows in the background."""
    ctx = context_of(request)
    ctx.trace.update(status="error", status_code=err.status, error_code=err.code or err.type,
                     error_message=err.message[:500])
    if err.status >= 500:
        log.error("request %s failed: %s", ctx.request_id, err.message)
    # The Anthropic Messages API answers in Anthropic's error shape, so its SDK reads the message.
    body = anthropic_error_body(err) if request.url.path == ANTHROPIC_PATH else err.body()
    return JSONResponse(body, status_code=err.status, headers=err.headers, background=finish_task(ctx))


# --- exception handlers ------------------------------------------------------------------------------
async def _api_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, errors.APIError)
    return error_response(request, err)


async def _domain_error(request: Request, err: Exception) -> JSONResponse:
    mapped = errors.from_exception(err)
    return error_response(request, mapped)


def _add_provider_handler(app: FastAPI) -> None:
    from stratus.llm.errors import ProviderError  # no SDK imports: the error taxonomy only

    app.add_exception_handler(ProviderError, _domain_error)


async def _validation_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    mapped = validation_error(err.errors())
    return error_response(request, mapped)


def validation_error(problems: Any) -> errors.APIError:
    """400 (as OpenAI answers a body that does not match its schema) naming the first bad field as a dotted
    path (`messages.0.role`), with up to three problems; the code says what kind the first one is."""
    items = list(problems)
    if not items:
        return errors.schema_mismatch("the request body is invalid")
    parts, first, code = [], None, "invalid_value"
    for item in items[:3]:
        loc = [str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path", "header")]
        # Union members appear in the location as their type names; they say nothing to a caller.
        loc = [p for p in loc if not p.startswith(("function-", "tagged-union", "list[", "str", "dict["))]
        path = ".".join(loc) or "body"
        if first is None:
            first, code = path, _problem_code(str(item.get("type", "")))
        parts.append(f"{path}: {item.get('msg', 'invalid')}")
    more = f" (and {len(items) - 3} more)" if len(items) > 3 else ""
    return errors.schema_mismatch("invalid request body: " + "; ".join(parts) + more, param=first, code=code)


def _problem_code(kind: str) -> str:
    """OpenAI's error code for a pydantic error type."""
    if kind == "missing":
        return "missing_required_parameter"
    if kind == "extra_forbidden":
        return "unknown_parameter"
    if kind == "json_invalid":
        return "invalid_json"
    if kind.endswith(("_type", "_parsing")):
        return "invalid_type"
    return "invalid_value"


async def _http_error(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, StarletteHTTPException)
    if err.status_code == 404:
        mapped = errors.not_found(f"no route {request.method} {request.url.path}", code="unknown_url")
    elif err.status_code == 405:
        mapped = errors.APIError(405, f"method {request.method} is not allowed on {request.url.path}",
                                 code="method_not_allowed", headers={"allow": _allowed_methods(request)})
    else:
        mapped = errors.APIError(err.status_code, str(err.detail), code=None)
    return error_response(request, mapped)


def _allowed_methods(request: Request) -> str:
    """`Allow` for a 405 (RFC 9110): the methods of every route on the path. Starlette's own header names
    only the first matching route's (GET /v1/documents/{id} hides DELETE)."""
    from starlette.routing import Match

    # Asked per method (included routers nest routes; a full match is the one answer they all give).
    methods = {m for m in _METHODS for route in request.app.router.routes
               if route.matches({**request.scope, "method": m})[0] is Match.FULL}
    return ", ".join(sorted(methods))


# --- middleware --------------------------------------------------------------------------------------
class GatewayMiddleware:
    """Request id in and out, the body size limit (on Content-Length and on the bytes read) and read timeout
    (408), and a JSON 500 for anything unexpected (logged with the request id, no internals in the response)."""

    def __init__(self, app: Any, *, max_body_bytes: int, body_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        ctx = new_context(scope, request_id_from(headers.get("x-request-id")))
        if not spans.otel_enabled():
            await self._handle(scope, receive, send, headers, ctx)
            return
        # The request's span: a child of the caller's W3C traceparent/tracestate when it sent one.
        method = scope.get("method", "")
        with spans.server_span(method, headers, request_id=ctx.request_id) as request_span:
            request_span.set_attributes({"http.request.method": method, "url.path": scope.get("path", "")})
            try:
                await self._handle(scope, receive, send, headers, ctx, trace=spans.carrier())
            finally:
                route = getattr(scope.get("route"), "path", None)  # the matched route's template
                if route:
                    request_span.update_name(f"{method} {route}")
                request_span.set_attributes({"http.route": route, "http.response.status_code": ctx.status_code,
                                             "stratus.tenant_id": ctx.principal.tenant_id if ctx.principal else None,
                                             "stratus.cost_usd": ctx.spent_usd or None,
                                             "stratus.error_code": ctx.trace.get("error_code")})
                if ctx.status_code is not None and ctx.status_code >= 500:
                    request_span.set_error(str(ctx.status_code))

    async def _handle(self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[str, str],
                      ctx: RequestContext, trace: dict[str, str] | None = None) -> None:
        rid = ctx.request_id.encode()
        started = False
        # The request span's W3C context goes back to the caller (traceparent) with its trace id (x-trace-id).
        trace_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (trace or {}).items()]
        if trace and spans.TRACEPARENT in trace:
            trace_headers.append((b"x-trace-id", trace[spans.TRACEPARENT].split("-")[1].encode()))

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                ctx.status_code = int(message.get("status", 200))
                present = {k.lower() for k, _ in message.get("headers", ())}
                extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in ctx.headers.items()
                         if k.encode("latin-1") not in present]
                message["headers"] = [*message.get("headers", ()), *extra, (b"x-request-id", rid), *trace_headers]
            await send(message)

        try:
            if scope.get("method") in _BODY_METHODS:
                try:
                    body = await asyncio.wait_for(self._read_body(headers.get("content-length"), receive),
                                                  self.body_timeout_s)
                except TimeoutError:
                    await self._send_error(errors.APIError(
                        408, f"the request body did not arrive within {self.body_timeout_s:g} s",
                        code="request_timeout"), send_with_id)
                    return
                if body is None:
                    await self._send_error(self._too_large(), send_with_id)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_id)
            # Routes that answer without a background task of their own (models, documents, admin) are
            # traced here, once the response has gone out; chat and embeddings have already scheduled theirs.
            task = finish_task(ctx)
            if task is not None:
                await task()
        except Exception as err:  # noqa: BLE001 - the last resort: answer in the API's shape, log the rest
            mapped = errors.from_exception(err)
            if mapped.status >= 500:
                log.exception("request %s failed", ctx.request_id)
            if started:
                raise  # the response is under way; the server closes it
            ctx.trace.update(status="error", status_code=mapped.status, error_code=mapped.code,
                             error_message=mapped.message[:500])
            await self._send_error(mapped, send_with_id)
            task = finish_task(ctx)
            if task is not None:
                await task()

    async def _read_body(self, content_length: str | None, receive: Any) -> bytes | None:
        """The whole body, or None when it is over the limit (declared or actually sent)."""
        if content_length is not None and content_length.isdigit() and int(content_length) > self.max_body_bytes:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _too_large(self) -> errors.APIError:
        return errors.too_large(f"the request body is larger than max_body_bytes ({self.max_body_bytes} bytes)",
                                param="max_body_bytes")

    @staticmethod
    async def _send_error(err: errors.APIError, send: Any) -> None:
        body = json.dumps(err.body()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in err.headers.items()]
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that yields the body already read, then defers to the server (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
