"""The cold-start benchmark (bench/cold_start.py) in its quick form, so the script keeps working: one cold
start of two functions through the RIC (or the Web Adapter), their first invocation, the `import app`
peer, the layer sizes and the runtime's versions recorded. It runs in its own process, which starts its
own local stack; the figures themselves come from `make bench`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_run_records_init_first_invocation_peer_and_sizes(lambda_builds: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    # lambda_builds: the layers are built (or refreshed) by the tier's fixture, not inside the timed run.
    out = tmp_path / "cold_start.json"
    # Not this session's local stack: the benchmark starts its own database and AWS endpoint.
    env = {k: v for k, v in os.environ.items()
           if k != "DATABASE_URL" and not k.startswith(("STRATUS_", "AWS_", "MOTO_"))}
    run = subprocess.run([sys.executable, "-m", "bench.cold_start", "--quick", "--out", str(out)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    data = json.loads(out.read_text())
    pinned = re.search(r"^awslambdaric==(\S+)", (ROOT / "requirements.lock").read_text(), re.M)
    assert pinned and data["runtime"]["awslambdaric"] == pinned.group(1)
    assert data["machine"]["cores"] and data["runs"] == 1
    assert set(data["functions"]) == {"RetrieveFunction", "GatewayFunction"}

    retrieve = data["functions"]["RetrieveFunction"]
    assert retrieve["init_ms"]["n"] == 1 and retrieve["init_ms"]["median"] > 0
    assert retrieve["first_invocation"]["errors"] == [] and retrieve["first_invocation"]["ms"]["median"] > 0
    assert all(retrieve["peer"][name]["median"] > 0 for name in ("venv_import_ms", "layers_import_ms",
                                                                 "layers_import_pyc_ms", "layers_import_source_ms"))
    assert retrieve["layers"] == ["CommonLayer"]
    assert retrieve["package_mib"] >= data["layers_mib"]["CommonLayer"] > 0 and retrieve["headroom_mib"] > 0

    # The gateway either started or its failure is recorded, never a crash of the run.
    gateway = data["functions"]["GatewayFunction"]
    assert gateway["init_ms"]["n"] == 1 or gateway["first_invocation"]["errors"]
