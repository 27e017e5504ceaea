"""A streamed generation: the same prompt, cache, routing and accounting as `generate`, with the answer
delivered as it is produced.

`stream_generate` does everything up to the model call eagerly (prompt, model, cache lookup), so that a
bad request or an unknown model fails before the caller has received a byte. The returned object is
iterated for StreamChunks; when iteration ends, `response` holds the complete GenerateResponse (citations,
usage, cost) and the generation row and cache entry have been written. A cache hit streams the stored
text in a few pieces. A provider failure after the first chunk propagates (StreamInterrupted) after a
failed generation row is recorded: text already shown cannot be taken back, so there is no fallback.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

from stratus.citations import citations_for
from stratus.config import Settings, get_settings
from stratus.generation.service import (
    NOTHING_KNOWN,
    Known,
    Prepared,
    cached_response,
    finish,
    get_router,
    ms_since,
    prepare,
    record_failure,
    time_left,
)
from stratus.llm import errors as llm_errors
from stratus.llm.router import Router
from stratus.llm.types import StreamChunk, ToolCall, ToolCallDelta, Usage
from stratus.workflow_state import CacheInfo, GenerateResponse, GenerateTask

_CACHED_PIECES = 4  # a cached answer arrives in a few chunks, so clients exercise their streaming path


class StreamedGeneration:
    def __init__(self, task: GenerateTask, prep: Prepared, s: Settings, router: Router, conn: Any) -> None:
        self.task = task
        self.prep = prep
        self.settings = s
        self.router = router
        self._conn = conn
        self.response: GenerateResponse | None = None  # set once the stream is complete

    @property
    def passages(self) -> list[Any]:
        return self.prep.passages

    def __iter__(self) -> Generator[StreamChunk, None, None]:
        if self.prep.hit is not None:
            return self._replay_cached()
        return self._from_model()

    def _connection(self) -> Any:
        # The stream may be consumed on another thread than the one that prepared it: the recording
        # transaction uses that thread's own connection unless one was given.
        if self._conn is not None:
            return self._conn
        from stratus.db.connection import get_connection

        return get_connection()

    def _replay_cached(self) -> Generator[StreamChunk, None, None]:
        response = cached_response(self.task, self.prep)
        for piece in split_text(response.text, _CACHED_PIECES):
            yield StreamChunk(text=piece)
        self.response = finish(self._connection(), self.settings, self.task, response, self.prep.started)
        yield StreamChunk(finish_reason=response.finish_reason, usage=Usage(), model=response.model)

    def _from_model(self) -> Generator[StreamChunk, None, None]:
        prep, task = self.prep, self.task
        t = time.perf_counter()
        routed = self.router.stream(prep.alias, prep.request, deployments=prep.deployments,
                                    deadline_s=time_left(task, self.settings, self.settings.stream_deadline_s))
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        final: StreamChunk | None = None
        try:
            for chunk in routed:
                if chunk.finish_reason is not None:
                    final = chunk  # held back: the caller gets it with the accounting done
                    text.append(chunk.text)
                    _collect_calls(calls, chunk.tool_calls)
                    continue
                text.append(chunk.text)
                _collect_calls(calls, chunk.tool_calls)
                yield chunk
        except llm_errors.ProviderError as err:
            prep.timings["generate"] = ms_since(t)
            record_failure(self._connection(), task, prep, err)
            raise
        finally:
            routed.close()  # closed early (the caller left): the provider stops now, not at the next GC
        prep.timings["generate"] = ms_since(t)
        assert final is not None and routed.deployment is not None  # the router raises on a cut stream
        answer = "".join(text)
        tool_calls = [ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"]) for _, c in sorted(calls.items())]
        usage = routed.usage or Usage()
        response = GenerateResponse(
            request_id=task.request_id, tenant_id=task.tenant_id, mode=task.mode, text=answer,
            finish_reason=final.finish_reason or "stop", tool_calls=tool_calls,
            citations=citations_for(answer, prep.passages), model_alias=prep.alias,
            deployment=routed.deployment.name, provider=routed.deployment.provider,
            model=routed.model or routed.deployment.model, offline=routed.deployment.provider == "offline",
            prompt=prep.prompt_ref, usage=usage, cost_usd=routed.cost_usd,
            cache=CacheInfo(status="miss" if prep.use_cache else "bypass"),
            attempts=[a.as_dict() for a in routed.attempts], chunk_ids=[p.chunk_id for p in prep.passages],
            timings_ms=prep.timings)
        complete = response.finish_reason == "stop" and not tool_calls
        self.response = finish(self._connection(), self.settings, task, response, prep.started,
                               store=prep.store_args(complete, self.settings))
        yield final


def stream_generate(task: GenerateTask, *, settings: Settings | None = None, router: Router | None = None,
                    conn: Any = None, record_conn: Any = None, known: Known = NOTHING_KNOWN) -> StreamedGeneration:
    """Prepare on `conn` now; the stream records on `record_conn` (None: the consuming thread's own)."""
    from stratus.db.connection import get_connection

    s = settings or get_settings()
    router = router or get_router(s)
    prep = prepare(task, s, router, conn or get_connection(), known)
    return StreamedGeneration(task, prep, s, router, record_conn)


def split_text(text: str, pieces: int) -> list[str]:
    """`text` in up to `pieces` parts cut at spaces (joined, they give back `text` exactly)."""
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    parts, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        space = text.find(" ", end)
        end = len(text) if space < 0 or space - end > size else space + 1
        parts.append(text[start:end])
        start = end
    return parts


def _collect_calls(calls: dict[int, dict[str, str]], deltas: list[ToolCallDelta]) -> None:
    for d in deltas:
        call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
        call["id"] = d.id or call["id"]
        call["name"] = d.name or call["name"]
        call["arguments"] += d.arguments
