"""POST /v1/messages: the Anthropic Messages API over the chat pipeline (stratus.gateway.anthropic_api)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse

from stratus.gateway import anthropic_api, errors, sse
from stratus.gateway.chat import complete_chat
from stratus.gateway.context import context_of
from stratus.gateway.deps import Conn, require
from stratus.gateway.openai_models import ChatCompletionRequest

router = APIRouter(prefix="/v1", tags=["inference"],
                   responses=errors.responses(*errors.AUTHENTICATED, 404, 429, 502, 504,
                                              model=anthropic_api.AnthropicError))
Caller = Annotated[Any, Depends(require("inference"))]


@router.post("/messages", summary="Create a message (Anthropic Messages API; streamed with `stream: true`)")
def messages(body: anthropic_api.MessagesRequest, request: Request, who: Caller, conn: Conn) -> Any:
    try:
        chat = ChatCompletionRequest.model_validate(body.as_chat())
    except ValidationError as err:  # the translation of a valid Messages request should always validate
        raise errors.invalid_request(f"the request has no chat completion equivalent: {err.errors()[0]['msg']}",
                                     param=".".join(str(p) for p in err.errors()[0]["loc"])) from None
    answer = complete_chat(chat, context_of(request), who, conn, request.app.state.settings)
    if isinstance(answer, sse.EventStream):
        return answer.translated(anthropic_api.stream_events)
    assert isinstance(answer, JSONResponse)
    message = anthropic_api.message_object(json.loads(bytes(answer.body)))
    return JSONResponse(message, background=answer.background)
