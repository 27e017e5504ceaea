"""The Responses API's stream: the chat completion chunks of one answer as the Responses stream events
(response.created ... response.completed), in the shapes stratus.gateway.responses_api builds."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable
from contextlib import closing
from typing import Any

from stratus.gateway.responses_api import Shape, call_item, message_item, served_tier, usage_object


def _event(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: ".encode() + json.dumps(data, separators=(",", ":"),
                                                                  ensure_ascii=False).encode() + b"\n\n"


def stream_events(shape: Shape, chat_events: Iterable[bytes],
                  on_complete: Callable[[dict[str, Any]], None]) -> Generator[bytes, None, None]:
    """The Responses stream events for the chat completion chunks of one answer; `on_complete` gets the
    final response object (to store it) before response.completed is sent. An error frame becomes an
    `error` event and `response.failed`, and the stream ends there."""
    seq = 0
    output: list[dict[str, Any]] = []
    open_item: dict[str, Any] | None = None
    finish: str | None = None
    extra: dict[str, Any] = {}

    def emit(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        seq += 1
        return _event({"type": kind, "sequence_number": seq - 1, **fields})

    def close() -> Generator[bytes, None, None]:
        nonlocal open_item
        item, open_item = open_item, None
        if item is None:
            return
        index = len(output)
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            yield emit("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                       text=text, logprobs=[])
            yield emit("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                       part=part)
        else:
            yield emit("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                       name=item["name"], arguments=item["arguments"])
        item["status"] = "completed"
        output.append(item)
        yield emit("response.output_item.done", output_index=index, item=item)

    from stratus.gateway.sse import chunks as chat_chunks  # the stream's module: not at the app's import

    with closing(chat_chunks(chat_events)) as chunks:
        for data in chunks:
            if "error" in data:
                err = data["error"]
                yield emit("error", code=err.get("code"), message=err.get("message"), param=err.get("param"))
                failed = shape.response("failed", output)
                failed["error"] = {"code": err.get("code") or "server_error", "message": err.get("message")}
                yield emit("response.failed", response=failed)
                return
            if not data.get("choices"):  # the usage chunk: the last one
                yield from close()
                final = shape.response("completed", output, usage=usage_object(data.get("usage")), finish_reason=finish,
                                       extra=extra)
                on_complete(final)
                kind = "response.completed" if final["status"] == "completed" else "response.incomplete"
                yield emit(kind, response=final)
                return
            choice = data["choices"][0]
            delta = choice.get("delta") or {}
            if delta.get("role"):
                started = shape.response("in_progress", [])
                yield emit("response.created", response=started)
                yield emit("response.in_progress", response=started)
            if delta.get("content"):
                if open_item is None or open_item["type"] != "message":
                    yield from close()
                    open_item = message_item("", status="in_progress")
                    yield emit("response.output_item.added", output_index=len(output), item=dict(open_item))
                    open_item["content"] = [{"type": "output_text", "text": "", "annotations": [], "logprobs": []}]
                    yield emit("response.content_part.added", item_id=open_item["id"], output_index=len(output),
                               content_index=0, part=dict(open_item["content"][0]))
                open_item["content"][0]["text"] += delta["content"]
                yield emit("response.output_text.delta", item_id=open_item["id"], output_index=len(output),
                           content_index=0, delta=delta["content"], logprobs=[])
            for call in delta.get("tool_calls") or ():
                if call.get("id"):
                    yield from close()
                    open_item = call_item(call["id"], call["function"]["name"], "", status="in_progress")
                    yield emit("response.output_item.added", output_index=len(output), item=dict(open_item))
                arguments = call["function"].get("arguments")
                if arguments and open_item is not None:
                    open_item["arguments"] += arguments
                    yield emit("response.function_call_arguments.delta", item_id=open_item["id"],
                               output_index=len(output), delta=arguments)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
                extra = {k: data[k] for k in ("citations", "stratus") if k in data} | served_tier(data)
