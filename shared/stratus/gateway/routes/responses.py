"""The Responses API: POST /v1/responses, GET and DELETE /v1/responses/{id} (stratus.gateway.responses_api)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse

from stratus.gateway import errors, responses_api, responses_stream, sse
from stratus.gateway.chat import complete_chat
from stratus.gateway.context import context_of
from stratus.gateway.deps import Conn, require
from stratus.gateway.openai_models import ChatCompletionRequest

router = APIRouter(prefix="/v1", tags=["inference"], responses=errors.responses(*errors.AUTHENTICATED, 404, 429))
Caller = Annotated[Any, Depends(require("inference"))]
ResponseIdPath = Annotated[str, Path(pattern=responses_api.RESPONSE_ID_PATTERN)]


@router.post("/responses", summary="Create a model response (Responses API; streamed with `stream: true`)",
             responses=errors.responses(502, 504))
def create_response(body: responses_api.ResponsesRequest, request: Request, who: Caller, conn: Conn) -> Any:
    from stratus.db import stored_responses
    from stratus.db.connection import tenant_transaction

    history: list[dict[str, Any]] = []
    if body.previous_response_id:
        with tenant_transaction(who.tenant_id, conn):
            found = stored_responses.messages(conn, who.tenant_id, body.previous_response_id)
        if found is None:
            raise errors.not_found(f"previous_response_id: no stored response {body.previous_response_id!r}",
                                   param="previous_response_id")
        history = found
    conversation = history + body.input_messages()
    try:
        chat = ChatCompletionRequest.model_validate(body.as_chat(conversation))
    except ValidationError as err:  # the translation of a valid request should always validate
        raise errors.invalid_request(f"the request has no chat completion equivalent: {err.errors()[0]['msg']}",
                                     param=".".join(str(p) for p in err.errors()[0]["loc"])) from None
    shape = responses_api.Shape(body, body.model)

    def store(response: dict[str, Any]) -> None:
        if body.store:
            with tenant_transaction(who.tenant_id, conn):
                stored_responses.save(conn, who.tenant_id, response["id"],
                                      [*conversation, responses_api.assistant_message(response)], response)

    answer = complete_chat(chat, context_of(request), who, conn, request.app.state.settings)
    if isinstance(answer, sse.EventStream):
        return answer.translated(lambda events: responses_stream.stream_events(shape, events, store))
    assert isinstance(answer, JSONResponse)
    response = responses_api.response_object(shape, json.loads(bytes(answer.body)))
    store(response)
    return JSONResponse(response, background=answer.background)


@router.get("/responses/{response_id}", summary="A stored response")
def get_response(response_id: ResponseIdPath, who: Caller, conn: Conn) -> Any:
    from stratus.db import stored_responses
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(who.tenant_id, conn):
        found = stored_responses.response(conn, who.tenant_id, response_id)
    if found is None:
        raise errors.not_found(f"no stored response {response_id!r}", param="response_id")
    return found


@router.delete("/responses/{response_id}", summary="Delete a stored response")
def delete_response(response_id: ResponseIdPath, who: Caller, conn: Conn) -> Any:
    from stratus.db import stored_responses
    from stratus.db.connection import tenant_transaction

    with tenant_transaction(who.tenant_id, conn):
        deleted = stored_responses.delete(conn, who.tenant_id, response_id)
    if not deleted:
        raise errors.not_found(f"no stored response {response_id!r}", param="response_id")
    return {"id": response_id, "object": "response", "deleted": True}
