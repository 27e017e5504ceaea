"""Drops Pygments' lexers from GuardLayer but the ones named, and keeps its lexer registry true to what is left.

    python3 layers/guard/trim_pygments.py SITE FILE...   # FILE: kept from pygments/lexers/ (__init__.py ...)

spaCy's CLI imports rich, whose rich.syntax imports Pygments' lexer registry (pygments/lexers/__init__.py and
_mapping.py); nothing in the stack highlights code, so the ~300 lexer modules (3.9 MiB) go. The registry lists
every lexer with the module it lives in, and a lookup by name imports that module: left as it is, a lookup
of a dropped lexer would fail with ModuleNotFoundError, which callers such as rich's Syntax do not expect.
With its entry gone too, the lookup raises ClassNotFound, which they read as "no such lexer" (rich then shows
plain text). So LEXERS is rewritten with only the entries whose module stays.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HEADER = "# Rewritten by layers/guard/trim_pygments.py: only the lexers whose modules GuardLayer ships.\n\n"


def trim(site: Path, kept_files: set[str]) -> tuple[int, int]:
    """Drops the lexers not kept and rewrites the registry; returns (lexers before, lexers kept)."""
    lexers_dir = site / "pygments" / "lexers"
    for path in lexers_dir.iterdir():
        if path.name not in kept_files:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    kept_modules = {f"pygments.lexers.{Path(name).stem}" for name in kept_files}
    mapping = lexers_dir / "_mapping.py"
    namespace: dict[str, object] = {}
    exec(compile(mapping.read_text(), str(mapping), "exec"), namespace)  # the generated file is one dict literal
    lexers = namespace["LEXERS"]
    assert isinstance(lexers, dict), mapping
    entries = {name: entry for name, entry in sorted(lexers.items()) if entry[0] in kept_modules}
    lines = "".join(f"    {name!r}: {entry!r},\n" for name, entry in entries.items())
    mapping.write_text(f"{HEADER}LEXERS = {{\n{lines}}}\n")
    return len(lexers), len(entries)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not {"__init__.py", "_mapping.py"} <= set(argv[1:]):
        print("usage: trim_pygments.py SITE __init__.py _mapping.py [FILE...]", file=sys.stderr)
        return 2
    before, after = trim(Path(argv[0]), set(argv[1:]))
    print(f"pygments lexers: {after} of {before} kept")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
