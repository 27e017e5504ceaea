"""A loopback X-Ray daemon: collects the segment documents sent to it over UDP (the functions send none now
that their spans go over OTLP; the tier checks that), and X-Ray trace header helpers.

The X-Ray SDK sends each document as one datagram, `{"format": "json", "version": 1}\\n<document>`, to
AWS_XRAY_DAEMON_ADDRESS. In Lambda it sends subsegments of the segment Lambda itself records (the
facade), each carrying the invocation's trace id.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

HEADER = {"format": "json", "version": 1}


class XRayCollector:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.documents: list[dict[str, Any]] = []
        self.malformed: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="xray-daemon", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()
        return f"{host}:{port}"

    def start(self) -> XRayCollector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            header, _, body = data.partition(b"\n")
            try:
                if json.loads(header) != HEADER:
                    raise ValueError(header)
                self.documents.append(json.loads(body))
            except ValueError:
                self.malformed.append(data)

    def for_trace(self, trace_header: str, *, wait_s: float = 5.0, names: set[str] | None = None
                  ) -> list[dict[str, Any]]:
        """Documents (and their nested subsegments, flattened) of one trace; waits until `names` are all seen."""
        root = trace_root(trace_header)
        deadline = time.monotonic() + wait_s
        while True:
            found = [doc for top in list(self.documents) if top.get("trace_id") == root for doc in _flatten(top)]
            if names is None or names <= {d.get("name") for d in found} or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def trace_root(trace_header: str) -> str:
    """1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy from 'Root=1-...;Parent=...;Sampled=1'."""
    for part in trace_header.split(";"):
        key, _, value = part.partition("=")
        if key.strip() == "Root":
            return value.strip()
    raise ValueError(f"no Root in trace header {trace_header!r}")


def _flatten(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield document
    for sub in document.get("subsegments") or []:
        yield from _flatten(sub)


def trace_hex(trace_header: str) -> str:
    """The W3C form (32 hex digits) of an X-Ray header's Root: the same 128-bit trace id."""
    return trace_root(trace_header).removeprefix("1-").replace("-", "")
