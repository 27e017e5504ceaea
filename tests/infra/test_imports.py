"""The library's import contracts (pyproject.toml [tool.importlinter]), checked by import-linter: no import
cycle between stratus's subpackages or between sibling modules at any depth, imports inside functions
included, and no runtime module importing the tooling package (stratus_tools), the tests, the benchmarks
or test-only tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_the_import_contracts_are_kept() -> None:
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
