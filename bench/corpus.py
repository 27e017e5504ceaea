"""Real text for benchmarks, made on any machine without a download: the Python standard library's
own documentation, rendered by pydoc as HTML pages (one per module) or plain text.
"""

from __future__ import annotations

import pkgutil
import pydoc
import sys
import warnings
from pathlib import Path

# Modules whose import has side effects (GUIs, test suites, this-is-Python poems) are skipped.
_SKIP_PREFIXES = ("test", "idlelib", "tkinter", "turtle", "antigravity", "this", "lib2to3", "ensurepip",
                  "venv", "pydoc_data", "__", "_", "xxsubtype", "msilib", "winreg", "winsound", "nt")


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
            if fmt == "html":
                body = html.page(pydoc.describe(module), html.document(module, name))
                path = directory / f"{name}.html"
            else:
                body = pydoc.plain(pydoc.render_doc(module, renderer=pydoc.plaintext))
                path = directory / f"{name}.txt"
        except Exception:  # noqa: BLE001 - a module that cannot be documented here is just skipped
            continue
        if len(body) < 500:
            continue
        path.write_text(body, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".stratus/bench-corpus")
    files = write_corpus(out, limit=int(sys.argv[2]) if len(sys.argv) > 2 else None)
    print(f"{len(files)} pages, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB in {out}")
