"""Reading the evaluation sets: JSON Lines files of objects, with errors that name the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from stratus.errors import InvalidInput


def jsonl_objects(path: Path, *, error: type[InvalidInput], field: str, what: str) -> Iterator[tuple[str, dict]]:
    """("file:line", object) for each non-blank line. `error` is raised (with `field`) when the file cannot be
    read ("cannot read {what}") or a line is not a JSON object."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot read {what}: {err}", field=field) from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(f"{where}: invalid JSON: {err.msg}", field=field) from None
        if not isinstance(obj, dict):
            raise error(f"{where}: expected a JSON object", field=field)
        yield where, obj
