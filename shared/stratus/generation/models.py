"""The query workflow's typed state now lives in stratus.workflow_state (shared by guard and generation
without either importing the other). These names stay importable from here only for callers not yet
updated (gateway/chat.py, stratus_tools); new code imports stratus.workflow_state."""

from stratus.workflow_state import (
    CacheInfo,
    Citation,
    GenerateResponse,
    GenerateTask,
    Name,
    Parameters,
    PromptRef,
    QueryMode,
    QueryRequest,
    RequestId,
    RetrievalOptions,
    new_query,
    parse_model,
)

__all__ = [
    "CacheInfo", "Citation", "GenerateResponse", "GenerateTask", "Name", "Parameters", "PromptRef", "QueryMode",
    "QueryRequest", "RequestId", "RetrievalOptions", "new_query", "parse_model",
]
