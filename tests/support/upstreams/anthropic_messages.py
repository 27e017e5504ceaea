"""A loopback server speaking the Anthropic Messages API: POST /v1/messages, plain JSON or SSE events
(message_start, content_block_start/delta/stop, ping, message_delta, message_stop; `error` mid-stream)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.support.upstreams._base import STREAM_FAULTS, Fault, Reply, Upstream, _Handler, compose, retry_headers

_ids = itertools.count(1)

_ERRORS = {  # status -> (error.type, message) as api.anthropic.com sends them
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def _error(status: int, message: str | None = None) -> dict[str, Any]:
    etype, default = _ERRORS.get(status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}"))
    return {"type": "error", "error": {"type": etype, "message": message or default}, "request_id": "req_loopback"}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            parts.append(_text(block.get("content")))
        elif block.get("type") == "tool_use":
            parts.append(json.dumps(block.get("input")))
    return "".join(parts)


def reply_for(body: dict[str, Any], cached_tokens: int = 0) -> Reply:
    messages = body.get("messages") or []
    all_text = [_text(body.get("system")), *(_text(m.get("content")) for m in messages)]
    last = messages[-1] if messages else {}
    content = last.get("content")
    is_tool = isinstance(content, list) and any(b.get("type") == "tool_result" for b in content)
    last_text = _text(content) if last.get("role") == "user" else next(
        (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    tools = [(t.get("name", ""), t.get("input_schema") or {}) for t in body.get("tools") or []]
    return compose(last_text=last_text, last_is_tool_result=is_tool, tools=tools, all_text=all_text,
                   max_tokens=body.get("max_tokens"), cached_tokens=cached_tokens)


_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _usage(r: Reply) -> dict[str, Any]:
    # Anthropic's input_tokens excludes the tokens read from (or written to) the prompt cache.
    return {"input_tokens": r.input_tokens - r.cached_tokens, "output_tokens": r.output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": r.cached_tokens}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


class AnthropicUpstream(Upstream):
    base_path = ""  # the SDK appends /v1/messages

    def handle(self, h: _Handler, method: str, path: str, body: Any, fault: Fault | None) -> None:
        if method != "POST" or path.split("?")[0] != "/v1/messages":
            h.send_json(404, _error(404, f"Unknown path {path}"))
            return
        streaming = isinstance(body, dict) and bool(body.get("stream"))
        if fault is not None and not (fault.kind in STREAM_FAULTS and streaming):
            self._fail(h, fault)
            return
        if not isinstance(body, dict) or not body.get("messages") or not body.get("max_tokens"):
            h.send_json(400, _error(400, "max_tokens: Field required" if isinstance(body, dict)
                                    else "messages: Field required"))
            return
        reply = reply_for(body, self.cached_tokens)
        mid, model = f"msg_loop{next(_ids)}", str(body.get("model"))
        if streaming:
            self._stream(h, reply, mid, model, fault)
            return
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}]
        if reply.tool_name:
            content = [{"type": "tool_use", "id": f"toolu_{mid}", "name": reply.tool_name,
                        "input": reply.tool_arguments}]
        h.send_json(200, {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
                          "stop_reason": _STOP[reply.finish], "stop_sequence": None, "usage": _usage(reply)},
                    {"request-id": f"req_{mid}"})

    def _fail(self, h: _Handler, fault: Fault) -> None:
        if fault.kind in ("status", "stream_error"):
            h.send_json(fault.code, _error(fault.code), retry_headers(fault))
        elif fault.kind == "auth":
            h.send_json(401, _error(401))
        elif fault.kind == "context_length":
            h.send_json(400, _error(400, "prompt is too long: 208512 tokens > 200000 maximum"))
        elif fault.kind == "malformed":
            h.send_bytes(200, b'{"id": "msg_broken", "type": "message", "content": [{"type": "te',
                         "application/json")
        else:
            h.reset()

    def _stream(self, h: _Handler, reply: Reply, mid: str, model: str, fault: Fault | None) -> None:
        start_usage = _usage(reply) | {"output_tokens": 1}
        events = [
            _event("message_start", {"type": "message_start", "message": {
                "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": start_usage}}),
        ]
        if reply.tool_name:
            args = json.dumps(reply.tool_arguments)
            half = len(args) // 2
            block = {"type": "tool_use", "id": f"toolu_{mid}", "name": reply.tool_name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": part} for part in (args[:half], args[half:])]
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": w} for w in reply.words()]
        events.append(_event("content_block_start", {"type": "content_block_start", "index": 0,
                                                     "content_block": block}))
        events.append(_event("ping", {"type": "ping"}))
        n_before_deltas = len(events)
        events += [_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
                   for d in deltas]
        events += [
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": _STOP[reply.finish], "stop_sequence": None},
                                     "usage": {"output_tokens": reply.output_tokens}}),
            _event("message_stop", {"type": "message_stop"}),
        ]
        h.start_chunked("text/event-stream; charset=utf-8", {"request-id": f"req_{mid}"})
        h.write_stream(events, fault, first_delta=n_before_deltas,
                       error_frame=lambda f: _event("error", _error(f.code)))
