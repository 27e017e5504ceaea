"""Makes GuardLayer's spaCy load its command-line interface when a command runs, not at `import spacy`.

    python3 layers/guard/defer_spacy_cli.py SITE

`spacy/__init__.py` imports `spacy.cli.info` for the `spacy.info` function, and with it every command of the
CLI and their stack (typer, rich, Pygments, weasel, httpx, cloudpathlib, smart_open): about a third of what
the PII rail's first load imports, compiled from source on every cold start (Lambda's /opt is read-only).
The guard never runs a command. This rewrites that one import into a function that imports it when called,
and gives the module a `__getattr__` so that `spacy.cli` still imports the CLI on first use; GuardLayer then
ships without the CLI's stack, so such a use fails with ModuleNotFoundError naming the missing package.
The build stops if the import is not found exactly once (a spaCy release that moved it needs a look).
"""

from __future__ import annotations

import sys
from pathlib import Path

IMPORT = "from .cli.info import info  # noqa: F401\n"
DEFERRED = '''\
# Rewritten by layers/guard/defer_spacy_cli.py (Stratus's GuardLayer): the CLI loads when a command runs.
def info(*args: Any, **kwargs: Any) -> Any:
    from .cli.info import info as run

    return run(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "cli":
        import importlib

        return importlib.import_module(".cli", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


'''


def defer(site: Path) -> None:
    init = site / "spacy" / "__init__.py"
    source = init.read_text(encoding="utf-8")
    if source.count(IMPORT) != 1 or "def __getattr__" in source:
        raise SystemExit(f"{init}: expected the line {IMPORT.strip()!r} exactly once and no module __getattr__; "
                         "this spaCy release needs a look before its CLI can be deferred")
    init.write_text(source.replace(IMPORT, DEFERRED), encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: defer_spacy_cli.py SITE", file=sys.stderr)
        return 2
    defer(Path(argv[0]))
    print("spacy: its CLI is imported on first use")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
