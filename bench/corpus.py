"""Real text for benchmarks, made on any machine without a download: the Python standard library's
own documentation, rendered by pydoc as HTML pages (one per module) or plain text.
"""

from __future__ import annotations

import os
import pkgutil
import pydoc
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Modules whose import has side effects (GUIs, test suites, this-is-Python poems) are skipped.
_SKIP_PREFIXES = ("test", "idlelib", "tkinter", "turtle", "antigravity", "this", "lib2to3", "ensurepip",
                  "venv", "pydoc_data", "__", "_", "xxsubtype", "msilib", "winreg", "winsound", "nt",
                  "posix")  # posix.environ is a plain dict: its page would print the environment


# What differs between two renderings of the same module: object addresses and warning-filter counters.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_WARNING_REGISTRY = re.compile(r"(__warningregistry__(?:</strong>)? = )\{[^}]*\}")


@contextmanager
def _environment_hidden() -> Iterator[None]:
    """cgi.FieldStorage's default `environ=os.environ` renders the whole process environment into its page:
    a leak of whatever the environment holds, and a corpus that changes with it (so would every synthetic
    text made from it, and the embedding cache keyed by their text)."""
    environ_type = type(os.environ)
    original = environ_type.__repr__
    environ_type.__repr__ = lambda self: "environ({...})"  # type: ignore[method-assign]
    try:
        yield
    finally:
        environ_type.__repr__ = original  # type: ignore[method-assign]


def _stable(body: str) -> str:
    return _WARNING_REGISTRY.sub(r"\1{}", _ADDRESS.sub(" at 0x0", body))


def stdlib_modules() -> list[str]:
    names = set(sys.stdlib_module_names)
    for info in pkgutil.iter_modules():
        if info.name in names:
            names.add(info.name)
    return sorted(n for n in names if not n.startswith(_SKIP_PREFIXES))


def write_corpus(directory: Path, *, limit: int | None = None, fmt: str = "html") -> list[Path]:
    """Write one page per importable stdlib module; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    html = pydoc.HTMLDoc()
    for name in stdlib_modules():
        if limit is not None and len(written) >= limit:
            break
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = __import__(name)
            with _environment_hidden():
                if fmt == "html":
                    body = html.page(pydoc.describe(module), html.document(module, name))
                    path = directory / f"{name}.html"
                else:
                    body = pydoc.plain(pydoc.render_doc(module, renderer=pydoc.plaintext))
                    path = directory / f"{name}.txt"
        except Exception:  # noqa: BLE001 - a module that cannot be documented here is just skipped
            continue
        body = _stable(body)
        if len(body) < 500:
            continue
        path.write_text(body, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".stratus/bench-corpus")
    files = write_corpus(out, limit=int(sys.argv[2]) if len(sys.argv) > 2 else None)
    print(f"{len(files)} pages, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {out}")
