"""What every loopback upstream shares: the HTTP server, the fault queue, request recording, and the
deterministic answer a fake model gives.

The answer rule (the same for every protocol, so tests and benchmarks can predict it):
- the last turn is a tool result -> "Echo: " + the tool result's text;
- the request offers tools and the last user text names one of them -> a call of that tool whose
  arguments put the user text in every required string property (or in `input` when none);
- otherwise -> "Echo: " + the last user text.
The answer is cut to `max_tokens` words (finish reason "length"). Tokens are whitespace-separated words,
counted honestly over everything the request sent (system, messages, tool results).
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal, Self

FaultKind = Literal["status", "delay", "reset", "malformed", "cut_stream", "stream_error", "context_length", "auth"]
STREAM_FAULTS = ("cut_stream", "stream_error")  # these act inside a streamed answer


@dataclass(frozen=True)
class Fault:
    """One injected failure, consumed by the next request (FIFO)."""

    kind: FaultKind
    code: int = 0
    retry_after: float | None = None  # seconds, sent as retry-after (and retry-after-ms when fractional)
    seconds: float = 0.0
    after_chunks: int = 0

    @classmethod
    def status(cls, code: int, *, retry_after: float | None = None) -> Fault:
        """An HTTP error with the provider's real error body for that status (429, 500, 503, 529, ...)."""
        return cls("status", code=code, retry_after=retry_after)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after `seconds` (longer than the client's timeout)."""
        return cls("delay", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        """Close the connection (TCP RST) without answering."""
        return cls("reset")

    @classmethod
    def malformed(cls) -> Fault:
        """200 with a body that is not the protocol's JSON."""
        return cls("malformed")

    @classmethod
    def cut_stream(cls, after_chunks: int = 1) -> Fault:
        """Stream `after_chunks` deltas, then drop the connection mid-answer."""
        return cls("cut_stream", after_chunks=after_chunks)

    @classmethod
    def stream_error(cls, code: int, *, after_chunks: int = 1) -> Fault:
        """Stream `after_chunks` deltas, then the protocol's in-stream error for `code` (e.g. Anthropic's
        `error` event with overloaded_error for 529, Bedrock's throttlingException event for 429)."""
        return cls("stream_error", code=code, after_chunks=after_chunks)

    @classmethod
    def context_length(cls) -> Fault:
        """The provider's real error for a prompt longer than the model's window."""
        return cls("context_length")

    @classmethod
    def auth(cls) -> Fault:
        """Bad credentials (401; Bedrock answers 403)."""
        return cls("auth")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None


@dataclass
class Reply:
    """The fake model's answer, in protocol-neutral terms."""

    text: str = ""
    tool_name: str | None = None
    tool_arguments: dict[str, Any] = field(default_factory=dict)
    finish: Literal["stop", "length", "tool_calls"] = "stop"
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    def words(self) -> list[str]:
        """The text as stream deltas: one word each, the space kept with the word that follows it."""
        parts = self.text.split(" ")
        return [parts[0]] + [" " + p for p in parts[1:]] if self.text else []


def count_tokens(*texts: str) -> int:
    return sum(len(t.split()) for t in texts if t)


def compose(*, last_text: str, last_is_tool_result: bool, tools: list[tuple[str, dict[str, Any]]],
            all_text: list[str], max_tokens: int | None, cached_tokens: int) -> Reply:
    """Apply the answer rule (see the module docstring). `tools` are (name, JSON schema) pairs."""
    input_tokens = count_tokens(*all_text)
    cached = min(cached_tokens, input_tokens)
    if not last_is_tool_result:
        for name, schema in tools:
            if name and name in last_text:
                required = [p for p in schema.get("required", [])
                            if (schema.get("properties", {}).get(p) or {}).get("type", "string") == "string"]
                args = {p: last_text for p in required} or {"input": last_text}
                return Reply(tool_name=name, tool_arguments=args, finish="tool_calls", input_tokens=input_tokens,
                             output_tokens=count_tokens(json.dumps(args)) + 1, cached_tokens=cached)
    words = ("Echo: " + last_text.strip()).split()
    finish: Literal["stop", "length"] = "stop"
    if max_tokens is not None and len(words) > max_tokens:
        words, finish = words[:max_tokens], "length"
    return Reply(text=" ".join(words), finish=finish, input_tokens=input_tokens, output_tokens=len(words),
                 cached_tokens=cached)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    upstream: Upstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # a client that hung up (its timeout fired, or a test dropped it) is not a server bug
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: SDK clients reuse connections, as against real providers
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle + delayed ACK adds ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass  # quiet: tests and benchmarks read the recorded requests instead

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        up = self.server.upstream
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        up._record(RecordedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        fault = up._next_fault()
        if fault is not None and fault.kind == "reset":
            self.reset()
            return
        if fault is not None and fault.kind == "delay":
            if up._stopping.wait(fault.seconds):
                return
            fault = None
        if up.latency_s:
            up._stopping.wait(up.latency_s)
        try:
            up.handle(self, self.command, self.path, body, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired first)

    # Helpers the protocol modules use.
    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def send_bytes(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def start_chunked(self, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def write_stream(self, frames: list[bytes], fault: Fault | None, *, first_delta: int,
                     error_frame: Callable[[Fault], bytes], pause: Callable[[], bool] | None = None,
                     tail: Sequence[bytes] = ()) -> bool:
        """Send `frames` (the deltas start at index `first_delta`), then `tail`, as chunks and end the body.
        A stream fault stops it `fault.after_chunks` deltas in (never within `tail`): with the protocol's
        in-stream error for stream_error, else by cutting the connection. `pause` runs between frames; True
        from it stops the stream. True when the whole stream went out."""
        for i, data in enumerate(frames):
            if i and pause is not None and pause():
                return False
            if fault is not None and i >= first_delta + fault.after_chunks:
                if fault.kind == "stream_error":  # failures after the headers can only be reported in-stream
                    self.write_chunk(error_frame(fault))
                    self.end_chunked()
                    return False
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_WR)  # no terminating chunk: an incomplete body
                return False
            self.write_chunk(data)
        for data in tail:
            self.write_chunk(data)
        self.end_chunked()
        return True

    def reset(self) -> None:
        """Drop the connection with an RST: the client sees a reset, not a clean end."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


def retry_headers(fault: Fault) -> dict[str, str]:
    if fault.retry_after is None:
        return {}
    ra = fault.retry_after
    headers = {"retry-after": str(int(ra)) if float(ra).is_integer() else str(max(1, round(ra)))}
    if not float(ra).is_integer():
        headers["retry-after-ms"] = str(int(ra * 1000))
    return headers


class Upstream:
    """A loopback server for one provider protocol. Use as a context manager:

        with OpenAIUpstream() as up:
            up.inject(Fault.status(429, retry_after=1))
            client = OpenAI(base_url=up.base_url, api_key="test")
    """

    base_path: ClassVar[str] = ""

    def __init__(self, *, latency_s: float = 0.0, cached_tokens: int = 0, host: str = "127.0.0.1",
                 port: int = 0, chunk_interval_s: float = 0.0) -> None:
        self.latency_s = latency_s  # added before every answer (benchmarks)
        self.chunk_interval_s = chunk_interval_s  # between streamed deltas: a model that takes its time
        self.streams_completed = 0
        self.streams_abandoned = 0  # the client closed the connection before the stream's end
        self.cached_tokens = cached_tokens  # reported as prompt-cache hits (capped at the input tokens)
        self._faults: deque[Fault] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server((host, port), _Handler)
        self._server.upstream = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self.streams_completed = self.streams_abandoned = 0

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__}:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def handle(self, h: _Handler, method: str, path: str, body: Any, fault: Fault | None) -> None:
        raise NotImplementedError
