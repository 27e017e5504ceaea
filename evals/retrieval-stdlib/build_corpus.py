"""Writes corpus/<module>.md from the docstrings of the running Python's standard library.

The text is the CPython standard library's own documentation strings (PSF License Version 2; see
README.md beside this file). The corpus is committed; this script records how it was made and makes it
again (`python evals/retrieval-stdlib/build_corpus.py`); the shipped files came from CPython 3.11.7.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

MODULES = (
    "argparse", "base64", "bisect", "bz2", "calendar", "configparser", "contextlib", "copy", "csv",
    "dataclasses", "difflib", "doctest", "enum", "fnmatch", "fractions", "functools", "getpass", "gettext",
    "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac", "ipaddress", "json", "logging", "lzma",
    "pickle", "queue", "random", "sched", "secrets", "shelve", "shlex", "shutil", "smtplib", "sqlite3",
    "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit",
    "traceback", "urllib.parse", "uuid", "warnings", "weakref", "zipfile", "zoneinfo",
)
MAX_CHARS = 4000  # keeps ingestion (and so the CI eval) small; long modules keep their first members
MAX_MEMBER_CHARS = 600


def members(module: object) -> list[tuple[str, object]]:
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    out = []
    for name in names:
        obj = getattr(module, name, None)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            home = (getattr(obj, "__module__", None) or "").lstrip("_").split(".")[0]
            if home == module.__name__.split(".")[0]:
                out.append((name, obj))
    return out


def render(name: str) -> str:
    module = importlib.import_module(name)
    doc = inspect.getdoc(module) or ""
    summary = doc.splitlines()[0] if doc else name
    parts = [f"# {name}", "", doc or summary, ""]
    for member, obj in members(module):
        text = inspect.getdoc(obj) or ""
        if not text or text.startswith(("Initialize self", "Create and return a new object")):
            continue
        parts += [f"## {name}.{member}", "", text[:MAX_MEMBER_CHARS].rstrip(), ""]
    out = "\n".join(parts)
    return out[:MAX_CHARS].rsplit("\n", 1)[0] + "\n"


def main() -> int:
    corpus = Path(__file__).resolve().parent / "corpus"
    corpus.mkdir(exist_ok=True)
    for name in MODULES:
        (corpus / f"{name}.md").write_text(render(name), encoding="utf-8")
    print(f"{len(MODULES)} documents from Python {sys.version.split()[0]} in {corpus}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
