"""The parameter matrix in docs/gateway.md is what scripts/parameter_matrix.py renders from today's table
(stratus.llm.parameters): a change to the table without the doc fails here."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT

SCRIPT = ROOT / "scripts" / "parameter_matrix.py"


def test_the_parameter_matrix_in_the_gateway_doc_is_current() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_the_matrix_has_a_row_per_parameter_and_one_for_unknown_names() -> None:
    from stratus.llm.parameters import PARAMETERS

    block = subprocess.run([sys.executable, str(SCRIPT), "--print"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout
    rows = [line for line in block.splitlines() if line.startswith("| `") or line.startswith("| any other")]
    assert len(rows) == len(PARAMETERS) + 1
