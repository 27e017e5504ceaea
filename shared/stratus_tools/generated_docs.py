"""Sections of the docs that a script generates (the deploy cost table, the parameter matrix): the block
between two markers is replaced, and `--check` fails while the doc differs from what the script renders."""

from __future__ import annotations

import sys
from pathlib import Path


def splice(doc: str, block: str, begin: str, end: str, *, name: str = "the doc") -> str:
    """`doc` with the text from `begin` to `end` (both kept, as `block` carries them) replaced by `block`."""
    if doc.count(begin) != 1 or doc.count(end) != 1:
        raise SystemExit(f"{name} needs exactly one {begin} ... {end}")
    head, rest = doc.split(begin)
    _, tail = rest.split(end)
    return head + block.rstrip("\n") + tail


def update(path: Path, block: str, begin: str, end: str, *, check: bool, command: str) -> int:
    """Writes `block` into `path` (or, with `check`, returns 1 naming `command` when the file is stale)."""
    doc = path.read_text()
    updated = splice(doc, block, begin, end, name=str(path))
    if check:
        if updated != doc:
            print(f"{path} is stale: run `{command}`", file=sys.stderr)
            return 1
        return 0
    if updated != doc:
        path.write_text(updated)
    return 0
