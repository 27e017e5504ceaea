"""A loopback server speaking OpenAI Chat Completions: POST /v1/chat/completions, plain JSON or SSE
(`stream: true`, `data: [DONE]` at the end, a usage chunk when stream_options.include_usage)."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from tests.support.upstreams._base import STREAM_FAULTS, Fault, Reply, Upstream, _Handler, compose, retry_headers

_ids = itertools.count(1)

_ERRORS = {  # status -> (type, code, message) as api.openai.com sends them
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _error(status: int) -> dict[str, Any]:
    etype, code, message = _ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error",
                                                None, f"Error {status}."))
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def reply_for(body: dict[str, Any], cached_tokens: int = 0) -> Reply:
    messages = body.get("messages") or []
    all_text = [_text(m.get("content")) for m in messages]
    all_text += [c["function"].get("arguments", "") for m in messages for c in (m.get("tool_calls") or [])]
    last = messages[-1] if messages else {}
    is_tool = last.get("role") == "tool"
    last_text = _text(last.get("content")) if is_tool else next(
        (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    tools = [(t["function"]["name"], t["function"].get("parameters") or {}) for t in body.get("tools") or []
             if t.get("type") == "function"]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    reply = compose(last_text=last_text, last_is_tool_result=is_tool, tools=tools, all_text=all_text,
                    max_tokens=max_tokens, cached_tokens=cached_tokens)
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    if schema and not reply.tool_name:  # structured output: an object of the schema, the echo in its strings
        reply.text = json.dumps(_instance(schema, reply.text))
    return reply


def _instance(schema: dict[str, Any], text: str) -> Any:
    """A value that satisfies a (simple) JSON schema: objects with all their properties, the echo as strings."""
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: _instance(sub, text) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_instance(schema.get("items") or {}, text)]
    if kind in ("integer", "number"):
        return len(text.split())
    if kind == "boolean":
        return True
    return text


def _usage(r: Reply) -> dict[str, Any]:
    """As api.openai.com sends it, token details included."""
    return {"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens,
            "total_tokens": r.input_tokens + r.output_tokens,
            "prompt_tokens_details": {"cached_tokens": r.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def _served_tier(body: dict[str, Any]) -> str:
    """The tier OpenAI reports having served: `auto` (and no tier) is served as `default`."""
    asked = str(body.get("service_tier") or "auto")
    return "default" if asked == "auto" else asked


def _logprobs(body: dict[str, Any], reply: Reply) -> dict[str, Any] | None:
    """With `logprobs: true`: one entry per word of the answer (and `top_logprobs` alternatives each)."""
    if not body.get("logprobs") or reply.tool_name:
        return None
    top = int(body.get("top_logprobs") or 0)

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {"content": [entry(w, -0.25) | {"top_logprobs": [entry(w, -0.25 * (k + 1)) for k in range(top)]}
                        for w in reply.words()], "refusal": None}


class OpenAIUpstream(Upstream):
    base_path = "/v1"
    # False plays an OpenAI-compatible server that ignores stream_options (no usage chunk; several do).
    honours_include_usage = True
    # Sent on plain answers' messages as they are (e.g. url_citation, as OpenAI's search models send them).
    annotations: list[dict[str, Any]] = []

    def handle(self, h: _Handler, method: str, path: str, body: Any, fault: Fault | None) -> None:
        if method != "POST" or path.split("?")[0] != "/v1/chat/completions":
            h.send_json(404, {"error": {"message": f"Unknown path {path}", "type": "invalid_request_error",
                                        "param": None, "code": "unknown_url"}})
            return
        if fault is not None and not (fault.kind in STREAM_FAULTS and (body or {}).get("stream")):
            self._fail(h, fault)
            return
        if not isinstance(body, dict) or not body.get("messages"):
            h.send_json(400, {"error": {"message": "'messages' is a required property", "type": "invalid_request_error",
                                        "param": "messages", "code": None}})
            return
        reply = reply_for(body, self.cached_tokens)
        rid, model, created = f"chatcmpl-loop{next(_ids)}", str(body.get("model")), int(time.time())
        if body.get("stream"):
            self._stream(h, reply, body, rid, model, created, fault)
            return
        tool_calls = None
        if reply.tool_name:
            tool_calls = [{"id": f"call_{rid}", "type": "function",
                           "function": {"name": reply.tool_name, "arguments": json.dumps(reply.tool_arguments)}}]
        h.send_json(200, {
            "id": rid, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": "fp_loopback", "service_tier": _served_tier(body),
            "choices": [{"index": i, "logprobs": _logprobs(body, reply), "finish_reason": reply.finish,
                         "message": {"role": "assistant", "content": reply.text if not reply.tool_name else None,
                                     "refusal": None, "annotations": self.annotations, "tool_calls": tool_calls}}
                        for i in range(int(body.get("n") or 1))],  # n choices, all the same answer
            "usage": _usage(reply),
        }, {"x-request-id": rid})

    def _fail(self, h: _Handler, fault: Fault) -> None:
        if fault.kind in ("status", "stream_error"):  # a stream fault on a plain request fails it outright
            h.send_json(fault.code, _error(fault.code), retry_headers(fault))
        elif fault.kind == "auth":
            h.send_json(401, _error(401))
        elif fault.kind == "context_length":
            h.send_json(400, {"error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages resulted "
                           "in 131072 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
        elif fault.kind == "malformed":
            h.send_bytes(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind',
                         "application/json")
        else:  # cut_stream on a plain request
            h.reset()

    def _stream(self, h: _Handler, reply: Reply, body: dict[str, Any], rid: str, model: str, created: int,
                fault: Fault | None) -> None:
        include_usage = self.honours_include_usage and bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_loopback", "service_tier": _served_tier(body)}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = base | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            if include_usage:
                payload["usage"] = None
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        deltas: list[bytes] = []
        if reply.tool_name:
            args = json.dumps(reply.tool_arguments)
            half = len(args) // 2
            deltas.append(chunk({"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": f"call_{rid}", "type": "function",
                "function": {"name": reply.tool_name, "arguments": ""}}]}))
            deltas += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
                       for part in (args[:half], args[half:])]
        else:
            deltas.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            deltas += [chunk({"content": w}) for w in reply.words()]
        h.start_chunked("text/event-stream; charset=utf-8", {"x-request-id": rid})
        try:
            complete = self._send_deltas(h, deltas, fault, chunk, reply, base, include_usage)
        except OSError:  # the caller went away: a real provider stops generating (and billing) here
            with self._lock:
                self.streams_abandoned += 1
            h.close_connection = True
            return
        if complete:
            with self._lock:
                self.streams_completed += 1

    def _send_deltas(self, h: _Handler, deltas: list[bytes], fault: Fault | None, chunk: Any, reply: Reply,
                     base: dict[str, Any], include_usage: bool) -> bool:
        """True when the whole stream went out; False when a fault (or the server stopping) cut it."""
        tail = [chunk({}, reply.finish)]
        if include_usage:
            tail.append(b"data: " + json.dumps(base | {"choices": [], "usage": _usage(reply)}).encode() + b"\n\n")
        tail.append(b"data: [DONE]\n\n")
        return h.write_stream(
            deltas, fault, first_delta=1,  # delta 0 only opens the assistant turn
            error_frame=lambda f: b"data: " + json.dumps(_error(f.code)).encode() + b"\n\n",
            pause=lambda: bool(self.chunk_interval_s) and self._stopping.wait(self.chunk_interval_s), tail=tail)
