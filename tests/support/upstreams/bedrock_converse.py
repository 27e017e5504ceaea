"""A loopback server speaking Amazon Bedrock's Converse API: POST /model/{modelId}/converse (JSON) and
/model/{modelId}/converse-stream (AWS event-stream frames). Errors are JSON with an `x-amzn-ErrorType`
header, as botocore expects for the rest-json protocol; stream failures are exception frames."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from typing import Any
from urllib.parse import unquote

from tests.support.upstreams import eventstream
from tests.support.upstreams._base import STREAM_FAULTS, Fault, Reply, Upstream, _Handler, compose, retry_headers

_ids = itertools.count(1)
_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream)$")

_ERRORS = {  # status -> (error type, message) as bedrock-runtime sends them
    400: ("ValidationException", "Malformed input request."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "The requested resource could not be found."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error."),
    503: ("ServiceUnavailableException", "The service is temporarily unavailable."),
}
_STREAM_ERRORS = {429: "throttlingException", 500: "internalServerException", 503: "serviceUnavailableException",
                  424: "modelStreamErrorException", 400: "validationException"}
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _status(code: int) -> int:
    return 503 if code == 529 else code  # Bedrock has no 529: it sheds load with 503


def _stream_error(fault: Fault) -> bytes:
    etype = _STREAM_ERRORS.get(_status(fault.code), "internalServerException")
    return eventstream.exception(etype, _ERRORS.get(_status(fault.code), ("", "Error"))[1])


def _text(content: Any) -> str:
    parts = []
    for block in content or []:
        if "text" in block:
            parts.append(block["text"])
        elif "toolResult" in block:
            parts.append(_text(block["toolResult"].get("content")))
        elif "toolUse" in block:
            parts.append(json.dumps(block["toolUse"].get("input")))
        elif "json" in block:
            parts.append(json.dumps(block["json"]))
    return "".join(parts)


def reply_for(body: dict[str, Any], cached_tokens: int = 0) -> Reply:
    messages = body.get("messages") or []
    all_text = [_text(body.get("system")), *(_text(m.get("content")) for m in messages)]
    last = messages[-1] if messages else {}
    is_tool = any("toolResult" in b for b in last.get("content") or [])
    last_text = _text(last.get("content")) if last.get("role") == "user" else ""
    tools = [(t["toolSpec"]["name"], (t["toolSpec"].get("inputSchema") or {}).get("json") or {})
             for t in (body.get("toolConfig") or {}).get("tools") or [] if "toolSpec" in t]
    return compose(last_text=last_text, last_is_tool_result=is_tool, tools=tools, all_text=all_text,
                   max_tokens=(body.get("inferenceConfig") or {}).get("maxTokens"), cached_tokens=cached_tokens)


def _usage(r: Reply) -> dict[str, Any]:
    # Bedrock's inputTokens excludes the tokens read from (or written to) the prompt cache.
    uncached = r.input_tokens - r.cached_tokens
    return {"inputTokens": uncached, "outputTokens": r.output_tokens,
            "totalTokens": r.input_tokens + r.output_tokens, "cacheReadInputTokens": r.cached_tokens,
            "cacheWriteInputTokens": 0}


class BedrockUpstream(Upstream):
    base_path = ""  # botocore builds /model/{modelId}/converse[-stream] under the endpoint URL

    def handle(self, h: _Handler, method: str, path: str, body: Any, fault: Fault | None) -> None:
        m = _PATH.match(unquote(path.split("?")[0]))
        if method != "POST" or m is None:
            self._error(h, 404, f"Unknown path {path}")
            return
        streaming = m["op"] == "converse-stream"
        if fault is not None and not (fault.kind in STREAM_FAULTS and streaming):
            self._fail(h, fault)
            return
        if not isinstance(body, dict) or not body.get("messages"):
            self._error(h, 400, "The model returned the following errors: messages: required")
            return
        reply = reply_for(body, self.cached_tokens)
        rid = str(uuid.uuid4())
        if streaming:
            self._stream(h, reply, rid, fault)
            return
        content: list[dict[str, Any]] = [{"text": reply.text}]
        if reply.tool_name:
            content = [{"toolUse": {"toolUseId": f"tooluse_{next(_ids)}", "name": reply.tool_name,
                                    "input": reply.tool_arguments}}]
        h.send_json(200, {"output": {"message": {"role": "assistant", "content": content}},
                          "stopReason": _STOP[reply.finish], "usage": _usage(reply), "metrics": {"latencyMs": 1}},
                    {"x-amzn-requestid": rid})

    def _error(self, h: _Handler, status: int, message: str | None = None, headers: dict[str, str] | None = None,
               ) -> None:
        etype, default = _ERRORS.get(status, ("InternalServerException" if status >= 500 else "ValidationException",
                                              f"Error {status}"))
        h.send_json(status, {"message": message or default},
                    {"x-amzn-errortype": f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                     "x-amzn-requestid": str(uuid.uuid4())} | (headers or {}))

    def _fail(self, h: _Handler, fault: Fault) -> None:
        if fault.kind in ("status", "stream_error"):
            self._error(h, _status(fault.code), headers=retry_headers(fault))
        elif fault.kind == "auth":
            h.send_json(403, {"message": "The security token included in the request is invalid."},
                        {"x-amzn-errortype": "UnrecognizedClientException:http://internal.amazon.com/coral/"
                                             "com.amazon.coral.service/"})
        elif fault.kind == "context_length":
            self._error(h, 400, "Input is too long for requested model.")
        elif fault.kind == "malformed":
            h.send_bytes(200, b'{"output": {"message": {"role": "assistant", "content": [{"te', "application/json")
        else:
            h.reset()

    def _stream(self, h: _Handler, reply: Reply, rid: str, fault: Fault | None) -> None:
        frames = [eventstream.event("messageStart", {"role": "assistant"})]
        if reply.tool_name:
            args = json.dumps(reply.tool_arguments)
            half = len(args) // 2
            frames.append(eventstream.event("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {
                "toolUseId": f"tooluse_{next(_ids)}", "name": reply.tool_name}}}))
            deltas = [{"toolUse": {"input": part}} for part in (args[:half], args[half:])]
        else:
            deltas = [{"text": w} for w in reply.words()]
        n_before_deltas = len(frames)
        frames += [eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": d}) for d in deltas]
        frames += [
            eventstream.event("contentBlockStop", {"contentBlockIndex": 0}),
            eventstream.event("messageStop", {"stopReason": _STOP[reply.finish]}),
            eventstream.event("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": 1}}),
        ]
        h.start_chunked("application/vnd.amazon.eventstream", {"x-amzn-requestid": rid})
        h.write_stream(frames, fault, first_delta=n_before_deltas, error_frame=_stream_error)
