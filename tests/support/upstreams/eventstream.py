"""The AWS event-stream binary framing (application/vnd.amazon.eventstream), as Bedrock streams use it.

A message: prelude (total length u32, headers length u32, CRC32 of those 8 bytes), headers (name length
u8, name, value type u8 = 7 for string, value length u16, value), payload, CRC32 of everything before.
"""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any

_STRING = 7


def _headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        out += struct.pack("!B", len(n)) + n + struct.pack("!BH", _STRING, len(v)) + v
    return bytes(out)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    hdr = _headers(headers)
    total = 12 + len(hdr) + len(payload) + 4
    prelude = struct.pack("!II", total, len(hdr))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    body = prelude + hdr + payload
    return body + struct.pack("!I", binascii.crc32(body))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    return encode_message({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                          json.dumps(payload).encode())


def exception(exception_type: str, message: str) -> bytes:
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, json.dumps({"message": message}).encode())


def decode_messages(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Split a buffer into (headers, payload) messages, checking both CRCs (tests use it)."""
    out, pos = [], 0
    while pos < len(data):
        total, hlen, pcrc = struct.unpack_from("!III", data, pos)
        if binascii.crc32(data[pos:pos + 8]) != pcrc:
            raise ValueError(f"prelude CRC mismatch at byte {pos}")
        end = pos + total
        if binascii.crc32(data[pos:end - 4]) != struct.unpack_from("!I", data, end - 4)[0]:
            raise ValueError(f"message CRC mismatch at byte {pos}")
        headers, hpos = {}, pos + 12
        while hpos < pos + 12 + hlen:
            (nlen,) = struct.unpack_from("!B", data, hpos)
            name = data[hpos + 1:hpos + 1 + nlen].decode()
            vtype, vlen = struct.unpack_from("!BH", data, hpos + 1 + nlen)
            if vtype != _STRING:
                raise ValueError(f"header {name!r}: only string values are supported, got type {vtype}")
            start = hpos + 4 + nlen
            headers[name] = data[start:start + vlen].decode()
            hpos = start + vlen
        out.append((headers, data[pos + 12 + hlen:end - 4]))
        pos = end
    return out
