"""POST /v1/chat/completions (OpenAI-compatible; `rag/<alias>` answers from the tenant's documents)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from stratus.gateway import errors
from stratus.gateway.chat import complete_chat
from stratus.gateway.context import context_of
from stratus.gateway.deps import Conn, require
from stratus.gateway.openai_models import ChatCompletionRequest

router = APIRouter(prefix="/v1", tags=["inference"],
                   responses=errors.responses(*errors.AUTHENTICATED, 404, 429, 502, 504))
Caller = Annotated[Any, Depends(require("inference"))]


@router.post("/chat/completions", summary="Create a chat completion (streamed with `stream: true`)")
def chat_completions(body: ChatCompletionRequest, request: Request, who: Caller, conn: Conn) -> Any:
    return complete_chat(body, context_of(request), who, conn, request.app.state.settings)
